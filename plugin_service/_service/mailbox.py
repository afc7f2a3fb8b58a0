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
from typing import TYPE_CHECKING, Any, List, Optional, Type

from .. import errors
from .._events import check_event
from .._fork import forked_error
from .._future import DispatchFuture
from .core import _FAILED, _READY, _RUNNING, _STARTING, _STOPPED, _STOPPING, Deferred, _monotonic
from .ledger import Ledger

if TYPE_CHECKING:  # pragma: no cover
    pass


class Mailbox(Ledger):
    """The producer side (``submit``) and the consumer side's waits."""

    __slots__ = ()

    def submit(self, event: Any, *, block: bool = False,
               timeout: Optional[float] = None) -> DispatchFuture:
        """Validate ``event`` on this thread and enqueue it.

        Returns a :class:`DispatchFuture`. Raises ``ServiceUnavailable`` (READY,
        STARTING), ``ServiceStopped`` (STOPPING, STOPPED), ``ServiceFailed``,
        ``InvalidEvent``, or ``QueueFull`` (at once, or with ``block=True`` after
        waiting up to ``timeout`` seconds for room). Nothing rejected is enqueued.
        ``HostForked`` in a process forked from the host's.
        """
        # The hot path's producer side, written inline on purpose: the fast case
        # is one lock hold with no call in it; everything else is _submit_slow.
        if self._state is not _RUNNING or self._forked_from:
            if self._forked_from:
                raise forked_error(self._forked_from, self.name)
            raise self._reject(self._state_error(), event)
        reason = check_event(event, self._ingresses)
        if reason is not None:
            raise self._reject(errors.InvalidEvent(reason, service=self.name), event)
        future = DispatchFuture(event, self)
        items = self._items
        with self._lock:
            if self._state is _RUNNING and len(items) < self._room:
                items.append(future)
                self._enqueued += 1
                if self._worker_waiting:
                    # One wake-up is enough: later submits must not pay for notify()
                    # again before the worker has even run.
                    self._worker_waiting = False
                    self._not_empty.notify()
                return future
        return self._submit_slow(future, block, timeout)

    def _submit_slow(self, future: DispatchFuture, block: bool,
                     timeout: Optional[float]) -> DispatchFuture:
        event = future.event
        items = self._items
        endtime = None if timeout is None else _monotonic() + timeout
        with self._lock:
            while True:
                if self._state is not _RUNNING:
                    error: errors.PluginServiceError = self._state_error()
                    break
                if len(items) < self._room:
                    items.append(future)
                    self._enqueued += 1
                    if self._worker_waiting:
                        self._worker_waiting = False
                        self._not_empty.notify()
                    return future
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
        raise self._reject(error, event)

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
        while items:
            future = items.popleft()
            self._dropped += 1
            diagnostic = self._note(kind, "event dropped: service %s" % self._state.value,
                                    future._cid)
            self._dead_letter(future.event, diagnostic)
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
        if self._producers_waiting:
            self._not_full.notify_all()
        state = self._state
        if state is _FAILED:
            if self._restart_timer is None and not self._restart_when_idle:
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
