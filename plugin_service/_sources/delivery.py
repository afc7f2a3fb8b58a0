"""One item's way from ``receive`` into the service, by the overflow policy.

``received`` is counted as the item arrives and exactly one of ``submitted``,
``rejected`` or ``dropped`` once its fate is decided, so every snapshot has
``received == submitted + rejected + dropped`` plus the one item in between.

- ``block``: wait for room (and for the service to run) in slices of
  ``RECEIVE_SLICE``, reading nothing meanwhile, so back-pressure reaches the
  peer; once the host stops the source, wait no longer than its stop bound.
- ``drop_newest``: no room (or the service is not running), the item is dropped.
- ``drop_oldest``: no room, the source's oldest event still queued is
  withdrawn (its future cancelled, counted dropped by the service) and the new
  one queued; with none of its own queued, the new one is dropped.
"""
from __future__ import annotations

from typing import Any

from loguru import logger

from .. import errors
from .._diagnostics import DiagnosticKind
from .._events import IngressEvent
from .._guarded import describe, failure_log
from .._lifecycle import LifecycleState
from .handle import RECEIVE_SLICE, SourceHandle, _monotonic

__all__ = ["deliver"]

_RUNNING = LifecycleState.RUNNING


def deliver(handle: SourceHandle, item: Any) -> None:
    """Turn one item into an event and hand it to the service (the reader's thread)."""
    handle._note_received()
    try:
        event = handle._source.to_event(item)
    except BaseException as exc:  # noqa: B036 - a bad item never stops a source
        _reject(handle, "to_event raised %s" % describe(exc))
        return
    try:
        future = _submit(handle, event)
    except errors.InvalidEvent as exc:  # recorded by the service, as a submit is
        handle._note_rejected(exc)
        return
    if future is None:
        handle._note_dropped()
        return
    handle._note_submitted()
    if handle._acks:
        future.add_done_callback(_Ack(handle, event))
    if handle._overflow == "drop_oldest":
        queued = handle._queued
        queued.append(future)
        while queued and queued[0].done():  # the front is settled first: the deque stays short
            queued.popleft()


def _reject(handle: SourceHandle, reason: str) -> None:
    """An item with no event: refused like an invalid submit, in the service's
    diagnostics and counters too."""
    service = handle._service
    error = errors.InvalidEvent("source %r: %s" % (handle.name, reason), service=service.name)
    service._reject(error, None)
    handle._note_rejected(error)


def _submit(handle: SourceHandle, event: IngressEvent) -> Any:
    """Queue ``event`` by the overflow policy: its future, or None if it is dropped.
    Raises ``InvalidEvent`` (the service refused it)."""
    service = handle._service
    blocks = handle._overflow == "block"
    future = None
    while True:
        if future is None:
            future = service._admit(event)
            if future is None:  # the service is not running
                if not blocks or not _wait_running(handle):
                    return None
                continue
        refusal = service._place(future, _slice(handle) if blocks else 0.0)
        if refusal is None:
            return future
        if not isinstance(refusal, errors.QueueFull):
            future = None  # stopped meanwhile: admitted again once it runs
        elif blocks:
            if handle._stopping and _slice(handle) <= 0:
                return None
        elif handle._overflow != "drop_oldest" or not _withdraw_oldest(handle):
            return None


def _slice(handle: SourceHandle) -> float:
    """How long one wait for room may be: a slice, less once stopping."""
    if not handle._stopping:
        return RECEIVE_SLICE
    return max(0.0, min(RECEIVE_SLICE, handle._stop_deadline - _monotonic()))


def _wait_running(handle: SourceHandle) -> bool:
    """Wait a slice for the service to run; False once the stop bound has passed."""
    left = _slice(handle)
    if handle._stopping and left <= 0:
        return False
    handle._service.wait_for(_RUNNING, left)
    return True


def _withdraw_oldest(handle: SourceHandle) -> bool:
    """Cancel this source's oldest event still queued; False if there is none."""
    queued = handle._queued
    while queued:
        if queued.popleft().cancel():  # counted dropped by the service, acked
            return True
    return False


class _Ack:
    """The done-callback that calls ``on_outcome(event, future)`` once; what it
    raises is recorded as the source's last_error, redacted, and ignored."""

    __slots__ = ("_handle", "_event")

    def __init__(self, handle: SourceHandle, event: IngressEvent) -> None:
        self._handle = handle
        self._event = event

    def __call__(self, future: Any) -> None:
        handle = self._handle
        try:
            handle._source.on_outcome(self._event, future)
        except BaseException as exc:  # noqa: B036 - never into the settling thread
            text = describe(exc)
            handle._note_error(DiagnosticKind.SOURCE_FAILED, "on_outcome raised %s" % text)
            logger.debug("{}", failure_log(exc))  # redacted
