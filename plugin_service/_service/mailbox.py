"""The mailbox of a service: its bounded FIFO of futures and every wake-up.

Producers (``submit``, on the caller's thread) append under the lock and wake
the worker only if it waits; the worker takes from the front. Events handed to
a plugin ahead of their turn still count against the capacity: ``_room`` is
what is left of it for the FIFO.
Notifications are elided where they cannot matter: the worker is woken once per
wait, parked producers once per parking episode.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Sequence, Tuple, Type, TypeVar

from .. import errors
from .._events import IngressEvent, check_event
from .._fork import forked_error
from .._future import DispatchFuture, _read_cid
from .core import _FAILED, _READY, _RUNNING, _STARTING, _STOPPED, _STOPPING, Deferred, _monotonic
from .expiry import Expiry

if TYPE_CHECKING:  # pragma: no cover
    pass


class _Posted:
    """A posted event in the FIFO: what the worker needs of a future, without one.

    Its outcome is recorded like a submitted event's (counters, diagnostics, dead
    letters, ``fail_after``, retries); nobody waits on it, so settling it is a
    no-op, and it costs a third of a ``DispatchFuture`` to make.
    """

    # _queued_at: stamped by the mailbox, only when its service keeps latency
    # histograms (DispatchFuture's class default stands in for it elsewhere).
    __slots__ = ("event", "_cid", "_queued_at", "_expiry")
    _queued_at: float

    def __init__(self, event: Any, _owner: Any = None) -> None:
        self.event = event
        self._cid: Optional[str] = (event.correlation_id if type(event) is IngressEvent
                                    else _read_cid(event))

    def set_result(self, _result: Any) -> None:
        """Nobody waits for a posted event."""

    def set_exception(self, _exception: Optional[BaseException]) -> None:
        """Nobody waits for a posted event: its failure is in the ledger."""

    def _mark_running(self) -> None:
        """A posted event cannot be cancelled: nothing to mark."""

    def _mark_pending(self) -> None:
        """A posted event cannot be cancelled: nothing to mark."""


#: What the FIFO holds: a submitted event's future, or a posted event.
_Item = TypeVar("_Item", DispatchFuture, _Posted)


def _stamp(items: Sequence[Any]) -> None:
    """Note when ``items`` were accepted, for the queue-wait histogram."""
    now = _monotonic()
    for item in items:
        item._queued_at = now


def _posted_id(item: _Posted) -> str:
    """What ``post`` returns: the correlation id, as validation read it."""
    cid = item._cid
    return cid if cid is not None else str(item.event.correlation_id)


class Mailbox(Expiry):
    """The producer side (``submit``, ``post`` and their batches) and the
    consumer side's waits."""

    __slots__ = ()

    def submit(self, event: IngressEvent, *, block: bool = False,
               timeout: Optional[float] = None) -> DispatchFuture[Any]:
        """Validate ``event`` on this thread and enqueue it.

        Returns a :class:`DispatchFuture`. Raises ``ServiceUnavailable`` (READY,
        STARTING), ``ServiceStopped`` (STOPPING, STOPPED), ``ServiceFailed``,
        ``InvalidEvent``, or ``QueueFull`` (at once, or with ``block=True`` after
        waiting up to ``timeout`` seconds for room). Nothing rejected is enqueued.
        ``HostForked`` in a process forked from the host's.
        """
        return self._enqueue(event, DispatchFuture, block, timeout)

    def post(self, event: IngressEvent, *, block: bool = False,
             timeout: Optional[float] = None) -> str:
        """Enqueue ``event`` like :meth:`submit`, fire and forget: no future.

        The same checks, validation, back-pressure and typed errors as ``submit``;
        returns the event's correlation id. Its outcome is recorded exactly as a
        submitted event's (counters, ``last_error``, diagnostics, dead letters,
        ``fail_after``, retries, restarts); only nobody is told.
        """
        item = self._enqueue(event, _Posted, block, timeout)
        cid = item._cid
        return cid if cid is not None else _posted_id(item)

    def submit_many(self, events: Iterable[IngressEvent], *, block: bool = False,
                    timeout: Optional[float] = None) -> List[DispatchFuture[Any]]:
        """Validate each of ``events`` on this thread and enqueue them in order,
        under one lock hold for as many as the queue has room for.

        Returns one future per event when every event was accepted. Otherwise
        raises ``BatchRejected``, whose ``results`` holds each accepted event's
        future and, in a rejected one's place, the error ``submit`` would have
        raised for it alone (``InvalidEvent``; ``QueueFull`` for those that found
        no room, at once or after ``timeout`` with ``block=True``; the state's
        error once the service stopped taking events). Accepted events are queued
        and run whatever else was rejected. ``HostForked`` in a forked child.
        """
        return self._enqueue_many(events, DispatchFuture, block, timeout)

    def post_many(self, events: Iterable[IngressEvent], *, block: bool = False,
                  timeout: Optional[float] = None) -> List[str]:
        """:meth:`submit_many` without futures: returns the correlation ids, or
        raises ``BatchRejected`` with the accepted events' ids in ``results``."""
        items = self._enqueue_many(events, _Posted, block, timeout, _posted_id)
        ids = [item._cid for item in items]
        if None in ids:  # an event subclass whose correlation id is no plain str
            return [_posted_id(item) for item in items]
        return ids  # type: ignore[return-value]  # no None in it

    # A host-owned source submits in two steps, so that it decides itself what
    # a full queue or a service that is not running means for its item (wait,
    # withdraw its oldest, drop), with nothing recorded here for that refusal.
    def _admit(self, event: Any) -> Optional[DispatchFuture[Any]]:
        """The future of ``event`` if the service takes events now, validated as
        ``submit`` does (``InvalidEvent`` raised and recorded alike); None while
        it is not RUNNING (nothing recorded). Nothing is enqueued yet."""
        if self._state is not _RUNNING:
            return None
        reason = check_event(event, self._ingresses)
        if reason is not None:
            raise self._reject(errors.InvalidEvent(reason, service=self.name), event)
        return DispatchFuture(event, self)

    def _place(self, future: DispatchFuture[Any], timeout: float
               ) -> Optional[errors.PluginServiceError]:
        """Enqueue an admitted ``future``, waiting up to ``timeout`` seconds for
        room. None once it is queued; else the refusal (``QueueFull``, or the
        state's error), returned and not recorded."""
        if self._timed:
            future._queued_at = _monotonic()
        self._stamp_deadlines((future,))
        return self._enqueue_slow((future,), timeout > 0, timeout)[1]

    def _enqueue(self, event: Any, make: Type[_Item], block: bool,
                 timeout: Optional[float]) -> _Item:
        # The hot path's producer side, written inline on purpose: the fast case
        # is one lock hold with no call in it; everything else is _enqueue_slow.
        if self._state is not _RUNNING or self._forked_from:
            if self._forked_from:
                raise forked_error(self._forked_from, self.name)
            raise self._reject(self._state_error(), event)
        reason = check_event(event, self._ingresses)
        if reason is not None:
            raise self._reject(errors.InvalidEvent(reason, service=self.name), event)
        item = make(event, self)
        if self._timed:
            item._queued_at = _monotonic()
        if event.expires_at is not None or self._max_queue_age is not None:
            return self._enqueue_expiring(item, event, block, timeout)  # type: ignore[no-any-return]
        items = self._items
        with self._lock:
            if self._state is _RUNNING and len(items) < self._room:
                items.append(item)  # type: ignore[arg-type]  # a _Posted stands in
                self._enqueued += 1
                if self._worker_waiting:
                    # One wake-up is enough: later submits must not pay for notify()
                    # again before the worker has even run.
                    self._worker_waiting = False
                    self._not_empty.notify()
                return item
        error = self._enqueue_slow((item,), block, timeout)[1]
        if error is not None:
            raise self._reject(error, event)
        return item

    def _enqueue_slow(self, batch: Sequence[Any], block: bool, timeout: Optional[float]
                      ) -> Tuple[int, Optional[errors.PluginServiceError]]:
        """Enqueue ``batch`` in order, as much of it per lock hold as there is room
        for, waiting for more with ``block``. Returns how many were queued (a
        prefix) and None, or the error that refused the rest. Takes the lock."""
        items = self._items
        endtime = None if timeout is None else _monotonic() + timeout
        done, total = 0, len(batch)
        with self._lock:
            while True:
                if self._state is not _RUNNING:
                    error: errors.PluginServiceError = self._state_error()
                    break
                room = self._room - len(items)
                if room > 0:
                    taken = batch[done:done + room] if done or room < total else batch
                    items.extend(taken)
                    if self._expiry_on:
                        self._register(taken)
                    self._enqueued += len(taken)
                    done += len(taken)
                    if self._worker_waiting:
                        self._worker_waiting = False
                        self._not_empty.notify()
                    if done == total:
                        return done, None
                remaining = None if endtime is None else endtime - _monotonic()
                if not block or (remaining is not None and remaining <= 0) \
                        or threading.current_thread() is self._worker:
                    # The worker is the only consumer: it must never wait on itself.
                    error = errors.QueueFull(self._capacity, service=self.name)
                    break
                self._producers_waiting += 1
                self._room_signalled = False
                try:
                    self._not_full.wait(remaining)
                finally:
                    self._producers_waiting -= 1
                if self._timed:  # waiting for room is not waiting in the queue
                    _stamp(batch[done:])
        return done, error

    def _enqueue_many(self, events: Iterable[Any], make: Type[_Item], block: bool,
                      timeout: Optional[float], result: Any = None) -> List[_Item]:
        """Check the state, validate each event, enqueue the valid ones in order.
        Every rejection is counted and recorded like a single one; raises
        ``BatchRejected`` if there was any (``result`` maps an accepted item to
        what the caller gets for it)."""
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        events = list(events)
        if not events:
            return []
        if self._state is not _RUNNING:
            outcomes: List[Any] = [self._state_error() for _ in events]
        else:
            ingresses = self._ingresses
            reasons = [check_event(event, ingresses) for event in events]
            if not any(reasons):  # the common case: two passes, no per-event branch
                valid = [make(event, self) for event in events]
                if self._timed:
                    _stamp(valid)
                self._stamp_deadlines(valid)
                done, error = self._enqueue_slow(valid, block, timeout) if valid else (0, None)
                if error is None:
                    return valid
                outcomes = valid[:done] + [error] + [
                    self._refusal_like(error) for _ in range(len(valid) - done - 1)]
            else:
                outcomes = self._enqueue_valid(events, reasons, make, block, timeout)
        self._reject_all([(outcome, event) for outcome, event in zip(outcomes, events)
                          if isinstance(outcome, errors.PluginServiceError)])
        raise errors.BatchRejected(
            [outcome if result is None or isinstance(outcome, errors.PluginServiceError)
             else result(outcome) for outcome in outcomes], service=self.name)

    def _enqueue_valid(self, events: List[Any], reasons: List[Optional[str]],
                       make: Type[_Item], block: bool, timeout: Optional[float]) -> List[Any]:
        """Enqueue the events that have no ``reasons`` against them; returns the
        outcome of each event: its item, or the error that refused it."""
        outcomes: List[Any] = [None if reason is None
                               else errors.InvalidEvent(reason, service=self.name)
                               for reason in reasons]
        where = [index for index, reason in enumerate(reasons) if reason is None]
        valid = [make(events[index], self) for index in where]
        if self._timed:
            _stamp(valid)
        self._stamp_deadlines(valid)
        done, error = self._enqueue_slow(valid, block, timeout) if valid else (0, None)
        for count, (index, item) in enumerate(zip(where, valid)):
            outcomes[index] = item if count < done else (
                error if count == done else self._refusal_like(error))
        return outcomes

    def _refusal_like(self, error: Any) -> errors.PluginServiceError:
        """A fresh ``QueueFull`` or state error like ``error``: every refused event
        of a batch gets its own, as if submitted alone."""
        if isinstance(error, errors.QueueFull):
            return errors.QueueFull(error.capacity, service=self.name)
        made: errors.PluginServiceError = type(error)(str(error), service=self.name,
                                                      state=error.state)
        return made

    def _state_error(self) -> errors.PluginServiceError:
        state = self._state
        if state is _READY or state is _STARTING:
            kind: Type[errors._StateError] = errors.ServiceUnavailable
            text = "service %r is not running yet (%s)"
        elif state is _FAILED:
            kind = errors.ServiceFailed
            text = "service %r has failed (%s)"
        else:
            kind = errors.ServiceStopped
            text = "service %r is %s"
        return kind(text % (self.name, state.value), service=self.name, state=state)

    def _withdraw(self, future: DispatchFuture) -> bool:
        """``future.cancel()``: take a still-queued event back (counts as dropped)."""
        with self._lock:
            try:
                self._items.remove(future)
            except ValueError:
                return future.cancelled()
            self._dropped += 1
            future._mark_withdrawn()
            if self._producers_waiting:
                self._not_full.notify()
        return future._announce_withdrawn()

    def _drop_queued(self, error_type: Type[errors.PluginServiceError], later: Deferred) -> None:
        """Drop every queued event: counted, dead-lettered, futures fail afterwards."""
        items = self._items
        kind = error_type.kind
        self._expiry_heap.clear()  # every queued deadline goes with its event
        while items:
            future = items.popleft()
            self._dropped += 1
            diagnostic = self._note(kind, "event dropped: service %s" % self._state.value,
                                    future._cid)
            self._dead_letter(future.event, diagnostic, later)
            later.add(future.set_exception, error_type(
                "service %r %s; queued event dropped" % (self.name, self._state.value),
                service=self.name, state=self._state))  # type: ignore[call-arg]
        if self._producers_waiting:
            self._not_full.notify_all()

    def _dispatching(self) -> bool:
        """Whether the worker still hands queued events over: RUNNING, or STOPPING
        with drain."""
        state = self._state
        return state is _RUNNING or (state is _STOPPING and self._drain)

    def _requeue(self, futures: List[DispatchFuture], later: Deferred) -> None:
        """Events handed over ahead came back unrun: to the front of the queue,
        pending again, unless the state says they are dropped (lock held)."""
        if not futures:
            return
        items = self._items
        for future in reversed(futures):
            future._mark_pending()
            items.appendleft(future)
        self._room += len(futures)
        if self._expiry_on:
            self._register(futures)
        if self._producers_waiting:
            self._not_full.notify_all()
        state = self._state
        if state is _FAILED:
            if self._restart_timer is None and not self._restart_when_idle \
                    and not self._kept:
                self._drop_queued(errors.ServiceFailed, later)
        elif state is _STOPPED or (state is _STOPPING and not self._drain):
            self._drop_queued(errors.ServiceStopped, later)
        elif self._worker_waiting:  # a newer life's worker
            self._worker_waiting = False
            self._not_empty.notify()

    def _take_ahead(self) -> DispatchFuture:
        """Take the next queued event to hand to the plugin ahead of its turn: it
        still counts against the capacity until it is in flight (lock held)."""
        future = self._items.popleft()
        future._mark_running()
        self._room -= 1
        return future
