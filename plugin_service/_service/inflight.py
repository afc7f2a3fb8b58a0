"""The event in flight: the one being handled, its deadline and the one
dispatch timer, and how its outcome is settled.

At most one dispatch timer is armed per service, on the host's watchdog: when it
fires early (its event finished) it re-arms for the current deadline, so the hot
path pays no scheduling cost per event. Events handed to a plugin ahead of their
turn become the one in flight in order (``_promote``); one that comes back
unrun waits again (``_unpromote``).
"""
from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Optional, Tuple

from .. import errors
from .._context import DispatchContext
from .._future import DispatchFuture
from .._guarded import describe
from .._latency import FOLD_AT as _FOLD_AT
from .core import _IDLE, _IN_DISPATCH, _K, _RUNNING, _STOPPING, Deferred, _monotonic
from .mailbox import Mailbox

if TYPE_CHECKING:  # pragma: no cover
    pass


class InFlight(Mailbox):
    """Taking the next event, timing it, settling its outcome (lock held unless
    said otherwise)."""

    __slots__ = ()

    def _take(self, items: "collections.deque[DispatchFuture]",
              timeout: Optional[float]) -> Tuple[DispatchFuture, DispatchContext]:
        """Pop the next event and make it the one in flight (lock held)."""
        future = items.popleft()
        self._dispatched += 1
        self._current = future
        self._current_event = future.event
        self._timed_out_current = False
        self._phase = _IN_DISPATCH
        self._deadline = None  # set by _start_deadline as the handler is invoked
        ctx = self._current_ctx = DispatchContext(future.event, None)
        # Only our lock takes a queued future out, so it is still PENDING here.
        future._mark_running()
        if self._producers_waiting and not self._room_signalled:
            # Wake every parked producer once per parking episode, not on every
            # take: until they run, more notify() calls would only cost us.
            self._room_signalled = True
            self._not_full.notify_all()
        return future, ctx

    def _wait_for_event(self, life: int, timeout: Optional[float]
                        ) -> Optional[Tuple[DispatchFuture, DispatchContext]]:
        """Take the next event, waiting for one; None once this life's worker is
        done. With deadlines about, expired ones at the front expire first, and
        their futures resolve before the next is taken (its turn starts after)."""
        items = self._items
        later = Deferred()
        while True:
            with self._lock:
                while self._life == life:
                    if self._replacing is not None:
                        return None  # hand over to the new plugin (``replacing``)
                    state = self._state
                    if items and (state is _RUNNING or (state is _STOPPING and self._drain)):
                        taken = self._take_unexpired(items, timeout, later)
                        if taken is not None:
                            return taken
                        break
                    if state is not _RUNNING:
                        return None
                    self._worker_waiting = True
                    self._not_empty.wait()
                    self._worker_waiting = False
                else:
                    return None
            later.run()

    def _start_deadline(self, future: DispatchFuture, ctx: DispatchContext,
                        timeout: float) -> None:
        """Start the dispatch deadline as the handler is invoked.

        It is set after the previous event's done-callbacks ran, so a slow callback
        can never time out an event whose handler has not started. Writing the
        deadline before reading ``_timer_at`` pairs with the watchdog, which clears
        ``_timer_at`` before reading the deadline: one of the two always arms.
        """
        deadline = ctx.deadline = _monotonic() + timeout
        self._deadline = deadline
        if self._timer_at is None:
            self._arm_for(future, deadline)

    def _arm_for(self, future: DispatchFuture, deadline: float) -> None:
        """No dispatch timer is armed: arm one for ``future``'s ``deadline``,
        unless it is decided already (takes the lock)."""
        with self._lock:
            if self._current is future and self._deadline == deadline:
                self._arm(deadline)

    def _idle(self) -> None:
        """No event is in flight any more (lock held)."""
        self._current = None
        self._current_ctx = None
        self._deadline = None
        self._phase = _IDLE

    def _observe_latency(self, future: Any) -> None:
        """``latency_histograms``: the queue wait and handler time of the event in
        flight, whose handler's outcome is settled now (lock held)."""
        started = self._started
        waits = self._queue_waits
        waits.append(started - future._queued_at)
        self._handler_times.append(_monotonic() - started)
        if len(waits) >= _FOLD_AT:
            waits.fold()
            self._handler_times.fold()

    def _settle(self, future: DispatchFuture, ok: bool, value: Any, later: Deferred) -> None:
        """Record the outcome of the event in flight (lock held); ``later`` gets
        what resolves its future once the lock is released (nothing when the
        watchdog already decided it: timed out). The serial dispatcher settles a
        success inline, the same way."""
        self._idle()
        if self._timed_out_current:
            self._timed_out_current = False
            owed = self._clean_ups_on_return.pop(self._life, None)
            if owed is not None:  # abandoned past its grace, and back after all
                self._owe_clean_up(owed)
            pending = self._fail_pending
            if not ok and value.fatal:
                # The plugin cannot serve more (its process was killed past the
                # grace): like an expired grace on a thread, that is SERVICE_FAILED.
                pending = self._note(_K.SERVICE_FAILED, describe(value.cause))
            if pending is not None:
                self._fail(pending, later, clean_up=ok or not value.fatal)
            return
        if self._timed:
            self._observe_latency(future)
        breaker = self._breaker
        if ok:
            self._succeeded += 1
            self._consecutive_failures = 0
            if breaker is not None:
                breaker.succeeded()
            later.add(future.set_result, value)
            return
        self._failed += 1
        if value.counts:
            self._consecutive_failures += 1
        diagnostic = self._dispatch_failed(future, self._current_event, value, later)
        fail_after = self._config.fail_after
        if breaker is not None:  # it opens instead of fail_after
            if value.counts:
                breaker.failed()
            else:  # the plugin never saw it (an undeliverable event)
                breaker.unjudged(True)
            fail_after = None
        if (fail_after is not None and self._consecutive_failures >= fail_after) \
                or value.fatal:
            # A plugin that cannot serve more cannot clean up either.
            self._fail(diagnostic, later, clean_up=not value.fatal)

    def _promote(self, future: DispatchFuture, ctx: DispatchContext) -> None:
        """An event sent ahead becomes the one in flight (lock held)."""
        self._room += 1
        self._dispatched += 1
        self._current = future
        self._current_event = future.event
        self._current_ctx = ctx
        self._timed_out_current = False
        self._phase = _IN_DISPATCH
        self._deadline = None
        if self._producers_waiting and not self._room_signalled:
            self._room_signalled = True
            self._not_full.notify_all()
        started = self._started = _monotonic()  # its handler began when its turn came
        timeout = self._config.dispatch_timeout
        if timeout is not None:
            deadline = ctx.deadline = self._deadline = started + timeout
            self._arm(deadline)

    def _unpromote(self, future: DispatchFuture) -> None:
        """The event in flight came back unrun: it waits again (lock held)."""
        self._dispatched -= 1
        self._room -= 1
        self._current = None
        self._current_ctx = None
        self._deadline = None
        self._phase = _IDLE

    def _settle_detached(self, future: DispatchFuture, ok: bool, value: Any,
                         later: Deferred) -> None:
        """The outcome of an event that ran although it was never the one in flight
        (it began just before its batch was closed, lock held). The latency
        histograms leave it out: when its handler began is not known."""
        self._room += 1
        self._dispatched += 1
        if self._producers_waiting:
            self._not_full.notify_all()
        if ok:
            self._succeeded += 1
            later.add(future.set_result, value)
            return
        self._failed += 1
        self._dispatch_failed(future, future.event, value, later)

    def _arm(self, deadline: float) -> None:
        """Make sure a dispatch timer fires by ``deadline`` (lock held).

        At most one dispatch timer is armed per service: when it fires early (its
        event finished) it re-arms for the current deadline, so the hot path pays
        no scheduling cost per event.
        """
        armed = self._timer_at
        if armed is None or armed > deadline:
            self._timer_at = deadline
            self._runtime.watchdog.schedule(deadline, self._on_dispatch_timer, deadline)

    def _on_dispatch_timer(self, armed: float) -> None:
        later = Deferred()
        with self._lock:
            if self._timer_at == armed:
                self._timer_at = None
            deadline = self._deadline
            if self._current is None or self._timed_out_current or deadline is None:
                return
            if deadline > _monotonic():
                self._arm(deadline)
                return
            timeout = self._config.dispatch_timeout
            self._time_out_current(timeout, later,
                                   "handler did not return within %.3gs" % (timeout or 0.0))
        later.run()

    def _time_out_current(self, timeout: Optional[float], later: Deferred, why: str) -> None:
        """Decide the in-flight event as timed out (lock held); cancel its handler."""
        future = self._current
        assert future is not None
        event = self._current_event
        self._timed_out_current = True
        if self._current_ctx is not None:
            self._current_ctx._cancel()
        self._timed_out += 1
        self._consecutive_failures += 1
        diagnostic = self._note(_K.DISPATCH_TIMEOUT, why, future._cid)
        self._dead_letter(event, diagnostic, later)
        fail_after = self._config.fail_after
        if self._breaker is not None:  # it opens instead of fail_after
            self._breaker.failed()
            fail_after = None
        if fail_after is not None and self._consecutive_failures >= fail_after \
                and self._fail_pending is None:
            self._fail_pending = diagnostic  # FAILED once the handler returns
        grace = self._config.cancel_grace
        if grace is not None:
            self._runtime.watchdog.schedule(_monotonic() + grace, self._on_dispatch_grace,
                                            self._life, future, grace)
        later.add(future.set_exception, errors.DispatchTimeout(
            "service %r: %s" % (self.name, why), service=self.name, timeout=timeout))

    def _on_dispatch_grace(self, life: int, future: DispatchFuture, grace: float) -> None:
        later = Deferred()
        with self._lock:
            if self._life != life or self._current is not future:
                return
            diagnostic = self._note(
                _K.SERVICE_FAILED, "handler ignored cancellation: still running %.3gs after "
                "its deadline" % grace, future._cid)
            self._fail(diagnostic, later, on_return=True)
        later.run()
