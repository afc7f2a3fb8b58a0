"""``SourceHandle``: the host's handle on one source, and the state it keeps.

One lock (``_lock``) guards the state and the counters, so a ``status()``
snapshot is consistent; ``_wakeup`` (on it) is what the reader waits on while
paused or backing off, notified by ``pause``/``resume``/stop. A second lock,
``_send_lock``, serializes ``send()`` with the reader's connect and close, so
a send never meets a half-open connection. The reader (``reader.py``) is the
one writer of the state, through :meth:`_move`; ``pause``, ``resume`` and stop
only set flags and wake it.
"""
from __future__ import annotations

import collections
import datetime as _dt
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from loguru import logger

from .. import _fork, errors
from .._context import CallContext
from .._diagnostics import Diagnostic, DiagnosticKind
from .._lifecycle import LifecycleState
from .._redact import sanitize
from .base import IngressSource, SourceContext, acks, can_send
from .reconnect import ReconnectPolicy
from .status import SourceState, SourceStatus, can_move

if TYPE_CHECKING:  # pragma: no cover
    from .._future import DispatchFuture
    from .._service import ServiceHandle

__all__ = ["SourceHandle", "RECEIVE_SLICE", "SOURCE_STOP_BOUND", "OVERFLOW_POLICIES"]

_S = SourceState
_UTC = _dt.timezone.utc
_monotonic = time.monotonic
_log = logger.bind(source=None)

#: How long one ``receive(ctx)`` is given (``ctx.remaining()``), and how often
#: a reader waiting for its service or for room looks again: the bound within
#: which ``pause()`` and ``close()`` are answered.
RECEIVE_SLICE = 0.1
#: How long ``close()`` gives each source to hand over an item it read already
#: (then counted dropped) and to end; its thread is joined within this too.
SOURCE_STOP_BOUND = 5.0
OVERFLOW_POLICIES = ("block", "drop_newest", "drop_oldest")


class SourceHandle:
    """The host's handle on one source (``host.add_source`` returns it).

    ``status()``, ``send()``, ``pause()`` and ``resume()`` may be called from
    any thread, a service's handler included.
    """

    def __init__(self, name: str, source: IngressSource, service: "ServiceHandle[Any]",
                 ingress: str, overflow: str, reconnect: ReconnectPolicy) -> None:
        #: The source's name in its host.
        self.name = name
        self._source = source
        self._service = service
        self._ingress = ingress
        self._overflow = overflow
        self._policy = reconnect
        self._acks = acks(source)  # on_outcome overridden: decided once
        self._sends = can_send(source)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # the reader waits on it
        self._send_lock = threading.Lock()
        # Guarded by _lock (the reader reads its own flags without it).
        self._state = _S.CONNECTING
        self._received = self._submitted = self._rejected = self._dropped = 0
        self._reconnects = 0
        self._last_error: Optional[Diagnostic] = None
        self._last_received_at: Optional[_dt.datetime] = None
        self._paused = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._ctx: Optional[SourceContext] = None  # the reader's, cancelled on pause/stop
        # Guarded by _send_lock: connect() returned and close() has not begun.
        self._connected = False
        # drop_oldest: this source's events, oldest first, perhaps still queued.
        # The reader's alone.
        self._queued: "collections.deque[DispatchFuture[Any]]" = collections.deque()
        self._thread: Optional[threading.Thread] = None
        # Set in a forked child only (by the host): the pid it was inherited
        # from. Read before any lock, which a thread that died may hold.
        self._forked_from = 0

    def __repr__(self) -> str:
        return "<SourceHandle %r %s>" % (self.name, self._state.value)

    # ------------------------------------------------------------- public
    def status(self) -> SourceStatus:
        """One consistent snapshot of the source; never raises, never waits for it
        (in a forked child: ``failed``, with a HOST_FORKED ``last_error``)."""
        if self._forked_from:
            return self._forked_status(self._forked_from)
        with self._lock:
            return SourceStatus(
                name=self.name, service=self._service.name, state=self._state,
                received=self._received, submitted=self._submitted,
                rejected=self._rejected, dropped=self._dropped,
                reconnects=self._reconnects, last_error=self._last_error,
                last_received_at=self._last_received_at)

    def send(self, data: Any) -> None:
        """Send ``data`` through the source (its ``send``), on this thread.

        Sends are serialized, and never made while the source connects or
        closes. Raises ``SourceUnavailable`` when the source cannot send (its
        class does not implement ``send``; ``state`` None) or is not connected
        now (``state`` says where it is); what the source's ``send`` raises
        propagates unchanged. ``HostForked`` in a forked child.
        """
        self._refuse_if_forked()
        if not self._sends:
            raise errors.SourceUnavailable(
                "source %r cannot send: %s does not implement send()"
                % (self.name, type(self._source).__name__),
                source=self.name, service=self._service.name)
        with self._send_lock:
            if not self._connected:
                state = self._state
                raise errors.SourceUnavailable(
                    "source %r is not connected (%s); send again once it is open"
                    % (self.name, state.value), source=self.name, state=state,
                    service=self._service.name)
            self._source.send(data)

    def pause(self) -> None:
        """Stop reading: the source stays connected, its state becomes ``paused``
        once the reader is idle (within ``RECEIVE_SLICE``; an item it read already
        is still submitted). Idempotent."""
        self._refuse_if_forked()
        with self._lock:
            self._paused = True
            self._cancel_ctx()

    def resume(self) -> None:
        """Read again after :meth:`pause`. Idempotent."""
        self._refuse_if_forked()
        with self._lock:
            self._paused = False
            self._wakeup.notify_all()

    def _forked_status(self, created_pid: int) -> SourceStatus:
        """An inherited source, built without its lock: failed, nothing counted
        (its thread is the parent's)."""
        service = self._service.name
        diagnostic = Diagnostic(DiagnosticKind.HOST_FORKED, LifecycleState.FAILED,
                                str(_fork.forked_error(created_pid, service)),
                                _dt.datetime.now(_UTC))
        return SourceStatus(name=self.name, service=service, state=_S.FAILED,
                            last_error=diagnostic)

    def _refuse_if_forked(self) -> None:
        if self._forked_from:
            raise _fork.forked_error(self._forked_from, self._service.name)

    # ------------------------------------------------------- host side
    def _start(self) -> None:
        from .reader import run  # the loop builds on this module

        thread = threading.Thread(target=run, args=(self,), daemon=True,
                                  name="plugin_service-source-%s" % self.name)
        self._thread = thread
        thread.start()

    def _stop(self, deadline: float) -> None:
        """Ask the reader to end: no new reads; an item it holds may wait for room
        until ``deadline`` (monotonic), then it is dropped."""
        with self._lock:
            if not self._stopping or deadline < self._stop_deadline:
                self._stop_deadline = deadline
            self._stopping = True
            self._cancel_ctx()
            self._wakeup.notify_all()

    def _join(self, deadline: Optional[float]) -> bool:
        """Wait for the reader until ``deadline``; whether it ended."""
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(None if deadline is None else max(0.0, deadline - _monotonic()))
        if thread.is_alive():
            _log.warning("source {!r}: its thread is still in the source's code after "
                         "close(); left behind (a daemon thread)", self.name)
            return False
        return True

    # ---------------------------------------------- the reader's records
    def _cancel_ctx(self) -> None:
        ctx = self._ctx
        if ctx is not None:
            self._ctx = None
            CallContext._cancel(ctx)  # wakes a ctx.wait() in receive

    def _move(self, target: SourceState) -> None:
        """The one writer of the state (lock held); an impossible move is a bug."""
        if self._state is not target:
            assert can_move(self._state, target), (self._state, target)
            self._state = target

    def _moved(self, target: SourceState) -> None:
        with self._lock:
            self._move(target)

    def _note_error(self, kind: DiagnosticKind, message: str) -> Diagnostic:
        """Record ``message`` (redacted here) as the source's ``last_error`` and log it."""
        text = sanitize("source %r: %s" % (self.name, message))
        diagnostic = Diagnostic(kind, self._service.state, text, _dt.datetime.now(_UTC))
        with self._lock:
            self._last_error = diagnostic
        _log.warning("{}: {}", kind.value, text)
        return diagnostic

    def _note_received(self) -> None:
        now = _dt.datetime.now(_UTC)
        with self._lock:
            self._received += 1
            self._last_received_at = now

    def _note_submitted(self) -> None:
        with self._lock:
            self._submitted += 1

    def _note_dropped(self) -> None:
        with self._lock:
            self._dropped += 1

    def _note_rejected(self, error: errors.PluginServiceError) -> None:
        """An item refused (``InvalidEvent``): counted, and the source's last_error."""
        with self._lock:
            self._rejected += 1
        self._note_error(error.kind, str(error))

    def _note_reconnect(self) -> None:
        with self._lock:
            self._reconnects += 1
