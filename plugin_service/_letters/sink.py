"""Dead-letter sinks: every dead letter of a host also handed to ``dead_letter_sink``,
on one thread of the host's, through a bounded backlog.

A dead letter is recorded under its service's lock; the handoff runs just after
that lock is released (the service's ``Deferred``) and only appends to the
backlog here: no call out, no wait, so a slow or failing sink never slows a
worker. Past the backlog's capacity a letter is not handed over and is counted
(``overflow``). The sink thread, started with the first letter, calls
``sink.write(letter)`` in order; a write that raises is retried with exponential
backoff (tenacity) and, after ``WRITE_ATTEMPTS``, given up and counted
(``failed``). The lock here is a leaf: nothing is acquired while it is held.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Optional

import attrs
import tenacity  # type: ignore[import-untyped, unused-ignore]
from loguru import logger

from .._diagnostics import DeadLetter
from .._guarded import describe, type_name

__all__ = ["DeadLetterSinkStatus", "SinkDispatcher", "BACKLOG", "WRITE_ATTEMPTS", "JOIN_BOUND"]

#: How many dead letters wait at most for the sink thread (default of
#: ``PluginHost(dead_letter_sink_backlog=...)``).
BACKLOG = 1000
#: How many times one letter is offered to a sink that raises, and the backoff
#: between the offers (seconds: ``BACKOFF * 2**n``, at most ``MAX_BACKOFF``).
WRITE_ATTEMPTS = 5
BACKOFF = 0.05
MAX_BACKOFF = 2.0
#: How long ``close()`` without a timeout waits for the sink thread to write
#: what is pending.
JOIN_BOUND = 5.0


@attrs.frozen
class DeadLetterSinkStatus:
    """The counters of a host's ``dead_letter_sink`` (``HostStatus.dead_letter_sink``).

    Every dead letter handed over ends as one of ``written``, ``failed`` (the sink
    raised on every attempt) or ``overflow`` (the backlog of ``capacity`` was
    full, or the host was closing), or is still ``pending``. ``retries`` counts
    the attempts after a raising ``write``; ``last_error`` is the latest one,
    redacted (``"TypeName: message"``), None while the sink never raised.
    """

    sink: str
    capacity: int
    pending: int = 0
    written: int = 0
    failed: int = 0
    overflow: int = 0
    retries: int = 0
    last_error: Optional[str] = None

    @property
    def dropped(self) -> int:
        """Letters that never reached the sink: ``failed + overflow``."""
        return self.failed + self.overflow


class SinkDispatcher:
    """The backlog of one host's dead-letter sink and the thread that drains it.

    Everything but ``sink`` is guarded by ``_lock``.
    """

    def __init__(self, sink: Any, backlog: int, thread_name: str) -> None:
        write = getattr(sink, "write", None)
        if not callable(write):
            raise TypeError("a dead_letter_sink needs a write(letter) method, got %s"
                            % type_name(sink))
        if type(backlog) is not int or backlog < 1:
            raise ValueError("dead_letter_sink_backlog must be an int >= 1, got %r"
                             % (backlog,))
        self.sink = sink
        self._name = type_name(sink)
        self._thread_name = thread_name
        self._lock = threading.Lock()
        self._has_letters = threading.Condition(self._lock)
        self._letters: "collections.deque[DeadLetter]" = collections.deque()
        self._capacity = backlog
        self._thread: Optional[threading.Thread] = None
        self._closing = False
        self._hurry = threading.Event()  # set once close() stopped waiting: no backoff
        self._overflowing = False
        self._written = self._failed = self._overflow = self._retries = 0
        self._last_error: Optional[str] = None

    def put(self, letter: DeadLetter) -> None:
        """Hand ``letter`` over without waiting (after a service's lock)."""
        with self._lock:
            if not self._closing and len(self._letters) < self._capacity:
                self._letters.append(letter)
                self._has_letters.notify()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._thread_name,
                                                    daemon=True)
                    self._thread.start()
                return
            self._overflow += 1
            first = not self._overflowing
            self._overflowing = True
        if first:
            logger.warning("dead-letter sink {} is {} letters behind (or the host is "
                           "closing): newer ones are not handed to it (counted in "
                           "HostStatus.dead_letter_sink.overflow)", self._name, self._capacity)

    def status(self) -> DeadLetterSinkStatus:
        with self._lock:
            return DeadLetterSinkStatus(
                sink=self._name, capacity=self._capacity, pending=len(self._letters),
                written=self._written, failed=self._failed, overflow=self._overflow,
                retries=self._retries, last_error=self._last_error)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._letters:
                    if self._closing:
                        return
                    self._has_letters.wait()
                letter = self._letters[0]  # still pending while it is written
            written = self._write(letter)
            with self._lock:
                self._letters.popleft()
                if written:
                    self._written += 1
                else:
                    self._failed += 1
                if not self._letters:
                    self._overflowing = False

    def _write(self, letter: DeadLetter) -> bool:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(WRITE_ATTEMPTS),
            wait=tenacity.wait_exponential(multiplier=BACKOFF, max=MAX_BACKOFF),
            retry=tenacity.retry_if_exception_type(Exception),
            # A plain function of one ``retry_state``: tenacity 6.x tells the
            # calling convention by the signature, and takes a bound method's
            # (self, state) for the old three-argument one.
            before_sleep=lambda retry_state: self._retrying(retry_state),
            sleep=self._backoff, reraise=True)
        try:
            retrying(self.sink.write, letter)
            return True
        except BaseException as exc:  # noqa: B036 - a sink's bug never ends the thread
            text = describe(exc)
            with self._lock:
                self._last_error = text
            logger.error("dead-letter sink {} failed to write a letter of service {} "
                         "(given up): {}", self._name, str.__repr__(letter.service), text)
            return False

    def _backoff(self, seconds: float) -> None:
        self._hurry.wait(seconds)  # cut short once close() stopped waiting

    def _retrying(self, state: Any) -> None:
        outcome = state.outcome
        text = describe(outcome.exception()) if outcome is not None else "unknown"
        with self._lock:
            self._retries += 1
            self._last_error = text
        logger.warning("dead-letter sink {} raised, retrying: {}", self._name, text)

    def close(self, deadline: Optional[float]) -> None:
        """Take no more letters and wait for the pending ones to be written, at
        most until the monotonic ``deadline`` (``JOIN_BOUND`` from now without
        one); past it the remaining retries are made without backoff, unwaited."""
        with self._lock:
            self._closing = True
            self._has_letters.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_BOUND if deadline is None
                        else max(0.0, deadline - time.monotonic()))
        self._hurry.set()
