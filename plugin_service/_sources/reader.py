"""The thread of one source: wait for the service, connect, read, reconnect.

Guava's ``AbstractExecutionThreadService`` shape again, with a reconnect loop
around it: ``run`` is the thread, ``_connection`` one connection's life, and
each step of it a named function. Every item read goes to ``delivery``.
"""
from __future__ import annotations

from typing import Optional, Tuple

from .._diagnostics import DiagnosticKind
from .._guarded import describe
from .._lifecycle import LifecycleState
from .base import SourceContext, SourceExhausted
from .delivery import deliver
from .handle import RECEIVE_SLICE, SourceHandle, _log, _monotonic
from .status import SourceState

_S = SourceState
_K = DiagnosticKind
_RUNNING = LifecycleState.RUNNING
# How a connection ended: the host stops the source, the source ran out, or
# connect()/receive() raised.
_STOP, _ENDED, _BROKEN = "stop", "ended", "broken"


def run(handle: SourceHandle) -> None:
    """The source's thread, from the service's first start to its end."""
    failures = 0  # in a row, without an item delivered in between
    final = _S.STOPPED
    try:
        while _await_running(handle):
            how, delivered = _connection(handle)
            if how is not _BROKEN:
                break
            failures = 1 if delivered else failures + 1
            if handle._policy.gives_up(failures):
                handle._note_error(_K.SOURCE_FAILED, "gave up after %d failures in a row "
                                   "(ReconnectPolicy.max_attempts)" % failures)
                final = _S.FAILED
                break
            if not _backoff(handle, failures):
                break
    except BaseException as exc:  # noqa: B036 - a BaseException from the source ends it
        handle._note_error(_K.SOURCE_FAILED, "source thread ended by %s" % describe(exc))
        final = _S.FAILED
    finally:
        handle._moved(final)


def _await_running(handle: SourceHandle) -> bool:
    """Wait until the service is RUNNING; False once the host stops the source."""
    service = handle._service
    while service.state is not _RUNNING:
        if handle._stopping:
            return False
        service.wait_for(_RUNNING, RECEIVE_SLICE)
    return not handle._stopping


def _connection(handle: SourceHandle) -> Tuple[str, bool]:
    """Connect, then read until the connection ends; returns how it ended and
    whether it delivered an item."""
    handle._moved(_S.CONNECTING)
    source = handle._source
    try:
        source.connect()
    except SourceExhausted:
        _disconnect(handle)
        return _ENDED, False
    except BaseException as exc:  # noqa: B036 - anything but SourceExhausted: reconnect
        _failed(handle, "connect()", exc)
        _disconnect(handle, _S.BACKOFF)
        return _BROKEN, False
    with handle._send_lock:
        handle._connected = True
        handle._moved(_S.OPEN)
    how, delivered = _STOP, False
    try:
        while True:
            ctx = _next_context(handle)
            if ctx is None:
                return how, delivered
            try:
                item = source.receive(ctx)
            except SourceExhausted:
                how = _ENDED
                return how, delivered
            except BaseException as exc:  # noqa: B036 - as documented: a reconnect follows
                how = _BROKEN
                _failed(handle, "receive()", exc)
                return how, delivered
            if item is not None:
                delivered = True
                deliver(handle, item)
    finally:
        _disconnect(handle, _S.BACKOFF if how is _BROKEN else None)


def _next_context(handle: SourceHandle) -> Optional[SourceContext]:
    """The context of the next ``receive``, once the source may read: not
    paused, its service RUNNING. None once the host stops the source."""
    ctx = handle._ctx
    if ctx is not None and not handle._paused and handle._service.state is _RUNNING:
        ctx.deadline = _monotonic() + RECEIVE_SLICE  # the common case: no lock
        return ctx
    while True:
        with handle._lock:
            while handle._paused and not handle._stopping:
                handle._move(_S.PAUSED)
                handle._wakeup.wait()
            if handle._stopping:
                return None
            handle._move(_S.OPEN)
        if not _await_running(handle):
            return None
        with handle._lock:
            if handle._stopping:
                return None
            if not handle._paused:
                ctx = handle._ctx = SourceContext(_monotonic() + RECEIVE_SLICE)
                return ctx


def _failed(handle: SourceHandle, call: str, exc: BaseException) -> None:
    handle._note_error(_K.SOURCE_FAILED, "%s raised %s" % (call, describe(exc)))


def _disconnect(handle: SourceHandle, then: Optional[SourceState] = None) -> None:
    """No more sends, the state ``then`` (the end's state is left to ``run``),
    and the source's ``close()``: under the send lock, so that no send is under
    way meanwhile."""
    with handle._send_lock:
        handle._connected = False
        if then is not None:
            handle._moved(then)
        try:
            handle._source.close()
        except BaseException as exc:  # recorded and ignored, like connect's and receive's
            _failed(handle, "close()", exc)


def _backoff(handle: SourceHandle, failures: int) -> bool:
    """Wait before the next connect; False once the host stops the source."""
    seconds = handle._policy.delay(failures)
    _log.info("source {!r}: reconnecting in {:.3f}s", handle.name, seconds)
    deadline = _monotonic() + seconds
    with handle._lock:
        while not handle._stopping:
            left = deadline - _monotonic()
            if left <= 0:
                break
            handle._wakeup.wait(left)
        if handle._stopping:
            return False
    handle._note_reconnect()
    return True
