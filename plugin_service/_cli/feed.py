"""The stdin runner of ``plugin-service run``: JSON lines in, one outcome line out
for each, written whole under a lock."""
from __future__ import annotations

import datetime
import json
import os
import select
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, BinaryIO, TextIO

from loguru import logger

from .. import errors
from .._diagnostics import DiagnosticKind
from .._events import IngressEvent, new_correlation_id
from .._host import PluginHost
from .._redact import sanitize
from .._signals import _SignalDrain
from .outcomes import _error, _error_of, _outcome_line, _settled
from .streams import _Stream

_MAX_LINE_BYTES = 1 << 20  # the default of --max-line-bytes


_TOO_LONG = None  # what _LineSplitter yields for a line over its limit


def _expires_at(value: Any) -> datetime.datetime | None:
    """An input line's ``expires_at``: an ISO 8601 string (``Z`` for UTC too);
    None if it is not one. A naive one is left to ``submit`` to refuse."""
    if not isinstance(value, str):
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


class _LineSplitter:
    """Cuts a byte stream into lines of at most ``limit`` bytes (without the newline).

    Linear in the input: each byte is searched for a newline once (``_scanned``
    remembers how far), and deleting a line from the front of a ``bytearray`` does
    not move the rest. A line over ``limit`` is reported once, as ``_TOO_LONG``, as
    soon as it is known; its bytes are dropped up to its newline, so the buffer
    never holds more than ``limit`` plus one chunk.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._scanned = 0  # no newline in _buffer[:_scanned]
        self._skipping = False  # inside a line already reported as too long

    def feed(self, chunk: bytes) -> Iterator[bytes | None]:
        """The complete lines ``chunk`` ends (newline included), or ``_TOO_LONG``."""
        buffer = self._buffer
        buffer += chunk
        while True:
            newline = buffer.find(b"\n", self._scanned)
            if newline < 0:
                if self._skipping:
                    buffer.clear()
                    self._scanned = 0
                elif len(buffer) > self._limit:
                    buffer.clear()
                    self._scanned = 0
                    self._skipping = True
                    yield _TOO_LONG
                else:
                    self._scanned = len(buffer)
                return
            self._scanned = 0
            if self._skipping:
                self._skipping = False
                del buffer[:newline + 1]
                continue
            if newline > self._limit:
                del buffer[:newline + 1]
                yield _TOO_LONG
                continue
            line = bytes(buffer[:newline + 1])
            del buffer[:newline + 1]
            yield line

    def end(self) -> bytes | None:
        """At end of input: the last line if it had no newline, else None."""
        if self._skipping or not self._buffer:
            return None
        return bytes(self._buffer)


class _Runner:
    """Feeds the lines of stdin to a started host and writes every outcome once.

    Lines are read and submitted on the calling thread, one at a time, so a stop
    between two lines never leaves an accepted event unanswered. Accepted events
    and tool calls are answered from the done-callbacks of their futures, on the
    thread that settles them; ``_pending`` holds what was accepted and not yet
    answered.
    """

    def __init__(self, host: PluginHost, stdout: _Stream, submit_timeout: float,
                 max_line_bytes: int = _MAX_LINE_BYTES) -> None:
        self._host = host
        self._out = stdout
        self._submit_timeout = submit_timeout
        self._max_line_bytes = max_line_bytes
        self._pending: dict[int, tuple[str | None, str, Any]] = {}
        self._all_answered = threading.Condition(stdout.lock)
        self.stop_reason: str | None = None

    # ------------------------------------------------------------- reading
    def feed(self, stdin: TextIO | BinaryIO | None, stop: _SignalDrain) -> None:
        """Submit the lines of ``stdin`` until its end or a stop signal (``stop``).
        A closed stdin (``None``: the command started with fd 0 closed) is empty."""
        if stdin is not None:
            for number, raw in enumerate(self._lines(stdin, stop), start=1):
                try:
                    self._take(number, raw)
                except RecursionError:  # a payload nested deep enough to break a check
                    self._malformed(number, "line is nested too deeply")
                if stop.requested:
                    break
        self.stop_reason = stop.reason if stop.requested else "end of input"

    def _lines(self, stdin: TextIO | BinaryIO, stop: _SignalDrain
               ) -> Iterator[str | bytes | None]:
        """The raw lines of ``stdin`` (``_TOO_LONG`` for one over the limit), until
        its end or a stop."""
        try:
            fd = stdin.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is None or not hasattr(select, "select") or os.name != "posix":
            # No fd to wait on (an in-memory stream; Windows cannot select a pipe):
            # a stop is seen after the next line or the end of input.
            yield from self._lines_of_reader(getattr(stdin, "buffer", stdin), stop)
            return
        splitter = _LineSplitter(self._max_line_bytes)
        stop_fd = stop.fileno()
        while not stop.requested:
            ready, _, _ = select.select([fd, stop_fd], [], [])
            if stop_fd in ready:
                return
            try:
                chunk = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # EIO (a terminal hung up), EBADF...: no more input
                chunk = b""
            if not chunk:
                last = splitter.end()
                if last is not None:
                    yield last
                return
            yield from splitter.feed(chunk)

    def _lines_of_reader(self, reader: Any, stop: _SignalDrain
                         ) -> Iterator[str | bytes | None]:
        limit = self._max_line_bytes
        skipping = False
        while not stop.requested:
            raw = reader.readline(limit + 1)
            if not raw:
                return
            complete = raw[-1:] in ("\n", b"\n")
            if skipping:
                skipping = not complete
            elif len(raw) - complete > limit:
                skipping = not complete
                yield _TOO_LONG
            else:
                yield raw

    def _take(self, number: int, raw: str | bytes | None) -> None:
        if raw is _TOO_LONG:
            self._reject(number, None, "service", None, _error(
                "LineTooLong", "line_too_long",
                f"line is longer than --max-line-bytes ({self._max_line_bytes} bytes); "
                "skipped"))
            return
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._malformed(number, f"line is not UTF-8: {exc}")
                return
        else:
            text = raw
        if not text.strip():
            return
        try:
            obj = json.loads(text)
        except RecursionError:
            self._malformed(number, "not JSON this command reads: nested too deeply")
            return
        except ValueError as exc:
            self._malformed(number, f"not JSON: {exc}")
            return
        if isinstance(obj, dict) and "tool" in obj:
            self._call_tool(number, obj)
        elif isinstance(obj, dict) and "service" in obj:
            self._submit_event(number, obj)
        else:
            self._malformed(number, "a line is a JSON object with a 'service' or a 'tool' "
                            "field")

    def _submit_event(self, number: int, obj: dict[str, Any]) -> None:
        service = obj["service"]
        cid = obj.get("correlation_id")
        if "ingress" not in obj:
            error = errors.InvalidEvent("missing field 'ingress'",
                                        service=service if isinstance(service, str) else None)
            self._reject(number, cid, "service", service, _error_of(error))
            return
        fields: dict[str, Any] = {"kind": obj.get("kind", "event")}
        if cid is not None:
            fields["correlation_id"] = cid
        if obj.get("expires_at") is not None:
            fields["expires_at"] = _expires_at(obj["expires_at"])
            if fields["expires_at"] is None:
                error = errors.InvalidEvent(
                    "expires_at must be an ISO 8601 string with an offset, got %s"
                    % sanitize(repr(obj["expires_at"]), 60),
                    service=service if isinstance(service, str) else None)
                self._reject(number, cid, "service", service, _error_of(error))
                return
        event = IngressEvent(obj["ingress"], obj.get("source", "stdin"), obj.get("payload"),
                             **fields)
        logger.debug("line {}: event {} for service {}", number,
                     sanitize(event.correlation_id, 128), sanitize(service, 128))
        try:
            future = self._host.submit(service, event, block=True,
                                       timeout=self._submit_timeout)
        except errors.PluginServiceError as exc:
            self._reject(number, event.correlation_id, "service", service, _error_of(exc))
            return
        self._accept(number, event.correlation_id, "service", service, future)

    def _call_tool(self, number: int, obj: dict[str, Any]) -> None:
        tool = obj["tool"]
        cid = obj.get("correlation_id")
        if not isinstance(cid, str) or not cid.strip():
            cid = new_correlation_id()
        logger.debug("line {}: call {} of tool {}", number, sanitize(cid, 128),
                     sanitize(tool, 128))
        try:
            future = self._host.submit_tool(tool, obj.get("request"))
        except errors.PluginServiceError as exc:
            self._reject(number, cid, "tool", tool, _error_of(exc))
            return
        self._accept(number, cid, "tool", tool, future)

    # ----------------------------------------------------------- answering
    def _malformed(self, number: int, message: str) -> None:
        """Reject line ``number``, which names no service or tool it can be read for."""
        self._reject(number, None, "service", None,
                     _error("MalformedLine", "malformed_line", message))

    def _reject(self, number: int, cid: Any, key: str, target: Any,
                error: dict[str, str]) -> None:
        self._out.write_line(_outcome_line(number, cid, key, target,
                                           "rejected", "error", error))

    def _accept(self, number: int, cid: str | None, key: str, target: str,
                future: Future[Any]) -> None:
        with self._all_answered:
            self._pending[number] = (cid, key, target)
        future.add_done_callback(lambda done: self._answer(number, done))

    def _answer(self, number: int, future: Future[Any]) -> None:
        """Done-callback: write the outcome line (runs on the settling thread)."""
        outcome, what, value = _settled(future)  # outside the lock: it may convert a result
        with self._all_answered:
            entry = self._pending.pop(number, None)
            if entry is not None:
                cid, key, target = entry
                self._out.write_locked(_outcome_line(number, cid, key, target,
                                                     outcome, what, value))
            if not self._pending:
                self._all_answered.notify_all()

    def finish(self, timeout: float) -> None:
        """After the host closed: wait for the last answers; anything still open
        (a thread stuck past every bound) is answered as dropped."""
        with self._all_answered:
            self._all_answered.wait_for(lambda: not self._pending, timeout)
            for number, (cid, key, target) in sorted(self._pending.items()):
                self._out.write_locked(_outcome_line(
                    number, cid, key, target, "dropped", "error",
                    _error("HostClosed", DiagnosticKind.HOST_CLOSED.value,
                           "no outcome before exit")))
            self._pending.clear()

