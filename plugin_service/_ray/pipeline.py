"""The dispatcher for a plugin in another process: events handed over ahead.

Up to ``window`` events are handed to the plugin's process at once, so one round
trip overlaps the next; that process runs them one at a time, in order. The
oldest one sent is the event in flight: its deadline starts when the one before
it returned. Whenever an event does not end clean (it raised, was cancelled or
ran late) or is recalled (the service failed or stops without drain), the remote
side skips everything sent after it; those come back unrun and go to the front
of the queue, so the host knows that outcome (and decides a retry,
``fail_after``...) before anything later runs, as with one event at a time.

Whatever one ``_fill`` takes goes in one Ray call (up to ``batch.CALL_MAX``), and
each event's outcome comes back as it ends (``batch.py``): one call's fixed cost
for many events. More is handed ahead only while fewer than ``CALL_MAX`` are
outstanding, so that under load calls stay large.

The proxy's side of it: ``_send_many(sends, timeout)``, ``_receive()`` (the
oldest reply: ``(ran, value, clean)`` or the handler's exception),
``_may_send()`` (False while replies of a closed batch are outstanding) and
``_recall()`` (skip what was sent: a stop without drain).
"""
from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from .. import errors
from .._backend import handler_failure
from .._breaker import BreakerState
from .._context import DispatchContext
from .._future import DispatchFuture
from .._guarded import describe
from .._service import Failure, Redelivery
from .._service.core import _RUNNING, Deferred, _monotonic
from .._service.expiry import deadline_of
from .._service.ledger import _is_instance
from .._stacks import StackAnswer
from .batch import CALL_MAX
from .proxy import Undeliverable

if TYPE_CHECKING:  # pragma: no cover
    from .._service import ServiceHandle
    from .proxy import _ActorProxy

_Sent = Tuple[DispatchFuture, DispatchContext]
_ABANDONED: List[_Sent] = []  # _fill's answer when this life was abandoned
_CLOSED = BreakerState.CLOSED


class PipelineDispatcher:
    """Hands a Ray proxy up to ``window`` events at once (see the module)."""

    __slots__ = ("_service", "_proxy", "_window", "_refill", "_timeout", "_retry", "_sent",
                 "_skipped", "_draining", "_later")

    def __init__(self, service: "ServiceHandle", proxy: "_ActorProxy", window: int) -> None:
        self._service = service
        self._proxy = proxy
        self._window = max(1, int(window))
        # More is handed ahead only while fewer than a call's worth are outstanding:
        # else each reply's freed slot would go alone, one Ray call per event.
        self._refill = min(self._window, CALL_MAX)
        self._timeout = service._config.dispatch_timeout
        self._retry = service._config.retry
        self._sent: "collections.deque[_Sent]" = collections.deque()
        self._skipped: List[DispatchFuture] = []  # came back unrun, in order
        # Recalled: ``_sent`` comes back unrun (or, raced, with outcomes).
        self._draining = False
        self._later = Deferred()  # what runs once the service's lock is released

    def recall(self, _unused: Any = None) -> None:
        self._proxy._recall()

    def classify(self, exc: BaseException) -> Failure:
        kind = type(exc)  # never isinstance(): a lying __class__ runs plugin code
        if issubclass(kind, Undeliverable):
            # The plugin never saw it: not its failure, no fail_after count.
            cause = exc.__cause__ or exc
            return Failure("event could not be sent to the plugin: %s" % describe(cause),
                           cause, counts=False)
        return handler_failure(exc)  # a dead process cannot serve more

    def handler_stack(self, worker: Any) -> StackAnswer:
        """The actor's handler thread's stack: this worker only waits for it."""
        return self._proxy._handler_stack()

    def run(self, life: int) -> None:
        while True:
            sends = self._fill(life)
            if sends is None:
                return
            if sends is _ABANDONED:
                break  # abandoned after a stuck handler; what was sent is taken back
            if sends:
                self._hand_over(sends)
            if self._record(life, *self._receive_head(life)):
                break  # abandoned: the rest is taken back
            self._later.run()
        self._take_back()

    def _fill(self, life: int) -> Optional[List[_Sent]]:
        """With nothing outstanding, take the next event (waiting for one); then
        hand more ahead while the window has room. What to send; None once the
        worker is done, ``_ABANDONED`` if this life was. Expired events at the
        front expire (and their futures resolve) before anything is taken: an
        expired event is never sent."""
        later = Deferred()
        while True:
            sends = self._fill_once(life, later)
            if not later._calls:
                return sends
            later.run()  # nothing was taken: look again

    def _fill_once(self, life: int, later: Deferred) -> Optional[List[_Sent]]:
        """``_fill`` under the lock, once; with ``later`` given calls (expired
        events), nothing is taken."""
        service = self._service
        items = service._items
        sent = self._sent
        sends: List[_Sent] = []
        breaker = service._breaker  # ServiceConfig.breaker: the next head waits for it
        with service._lock:
            while True:
                if service._life != life:
                    return _ABANDONED
                dispatching = service._dispatching()
                wait: Optional[float] = None
                if sent:
                    break
                if service._replacing is not None:
                    return None  # hand over to the new plugin, what was sent answered
                if items and dispatching:
                    if breaker is None:
                        break
                    wait = breaker.wait()  # half-open: the head is its probe
                    if wait <= 0.0:
                        break
                elif service._state is not _RUNNING:
                    return None
                service._worker_waiting = True
                service._not_empty.wait(wait)
                service._worker_waiting = False
            if not sent:
                taken = service._take_unexpired(items, self._timeout, later)
                if taken is None:
                    return sends  # expired heads: their futures resolve first
                entry = taken
                sent.append(entry)
                sends.append(entry)
            # Ahead only while the breaker is closed: a failure sends back what
            # followed it unrun, so nothing ahead runs once it opened. An event
            # with a deadline is never sent ahead: it is sent when its turn
            # comes, checked then, so it never waits in the actor.
            if dispatching and not self._draining and service._replacing is None \
                    and len(sent) < self._refill and self._proxy._may_send() \
                    and (breaker is None or breaker.state is _CLOSED):
                while items and len(sent) < self._window and not (
                        service._expiry_heap and deadline_of(items[0]) is not None):
                    ahead = service._take_ahead()
                    entry = (ahead, DispatchContext(ahead.event, None))
                    sent.append(entry)
                    sends.append(entry)
        return sends

    def _hand_over(self, sends: List[_Sent]) -> None:
        """Send what ``_fill`` took; what could not be sent (stopped or failed
        meanwhile) goes back to the queue, and the rest is recalled."""
        service, proxy, sent, timeout = self._service, self._proxy, self._sent, self._timeout
        head, head_ctx = sent[0]
        if sends[0][0] is head:  # its turn begins: when (latency histograms), its deadline
            if service._stamped:
                service._started = _monotonic()
            if timeout is not None:
                service._start_deadline(head, head_ctx, timeout)
        # The first always goes; the rest unless it stopped or failed meanwhile.
        count = len(sends) if service._dispatching() else 1
        proxy._send_many(sends[:count], timeout)
        unsent = [future for future, _ctx in sends[count:]]
        for _future in unsent:
            sent.pop()  # the newest entries of ``sent``
        with service._lock:  # what was taken meanwhile found nothing to recall
            service._requeue(unsent, self._later)
            recall = not service._dispatching()
        self._later.run()
        if recall:
            proxy._recall()

    def _receive_head(self, life: int) -> Tuple[DispatchFuture, DispatchContext, bool, bool, Any]:
        """Wait for the oldest reply (retrying it if the policy says so):
        ``(future, ctx, ran, ok, value)``, ``value`` a ``Failure`` unless ``ok``."""
        proxy = self._proxy
        head, head_ctx = self._sent[0]
        ok = True
        try:
            ran, value, _clean = proxy._receive()
        except BaseException as exc:
            ran, value, ok = True, exc, False
            retry = self._retry
            if not self._draining and retry is not None and _is_instance(exc, retry.retry_on) \
                    and not head_ctx.cancelled and not issubclass(
                        type(exc), (errors.PluginCrashed, Undeliverable)):
                ok, value = Redelivery(self._service, life, exc, proxy.handle_ingress,
                                       self._timeout).run()
            if not ok:
                value = self.classify(value)  # plugin code: before the lock
        self._sent.popleft()
        if self._draining and not ok and not value.counts:
            ran = False  # recalled, and never sent: unrun
        # A crash is an outcome: the proxy answers unrun only for an event it
        # knows never began (progress.py); one that may have run is not run again.
        return head, head_ctx, ran, ok, value

    def _record(self, life: int, head: DispatchFuture, head_ctx: DispatchContext,
                ran: bool, ok: bool, value: Any) -> bool:
        """Under the lock: settle the reply, or queue it again if it did not run;
        make the next one sent the event in flight. True if this life was
        abandoned meanwhile."""
        service, later = self._service, self._later
        with service._lock:
            if service._life != life:
                if self._draining and ran:
                    service._settle_detached(head, ok, value, later)
                elif self._draining:
                    self._skipped.append(head)
                # else: the one in flight, decided when its life was abandoned
                self._draining = True  # the rest of ``_sent`` was never in flight
                return True
            if self._draining:
                if ran:  # it began before the recall reached it: its outcome
                    service._promote(head, head_ctx)
                    service._settle(head, ok, value, later)
                else:
                    self._skipped.append(head)
            elif not ran and not service._timed_out_current:
                # Skipped before it began (a cancel or recall got there first).
                service._unpromote(head)
                self._skipped.append(head)
            else:
                service._settle(head, ok, value if ran else None, later)
            if not self._sent:
                self._draining = False
                if self._skipped:
                    service._requeue(self._skipped, later)
                    self._skipped = []
            elif not self._draining:
                breaker = service._breaker
                if service._dispatching() and (breaker is None or breaker.state is _CLOSED):
                    service._promote(*self._sent[0])
                else:  # recalled, or the breaker opened: they come back unrun, or
                    self._draining = True  # with what they did
        return False

    def _take_back(self) -> None:
        """Abandoned: what was sent after the one in flight comes back unrun (its
        batch was closed by the cancel that abandoned it, or its process killed)."""
        service, proxy, sent, later = self._service, self._proxy, self._sent, self._later
        if sent and not self._draining:  # the one in flight, decided when abandoned
            sent.popleft()
            try:
                proxy._receive()
            except BaseException:
                pass
        while sent:
            future, _ctx = sent.popleft()
            try:
                ran, value, _clean = proxy._receive()
                ok = True
            except BaseException as exc:  # it may have run: an outcome, never again
                ok, value = False, self.classify(exc)
                ran = value.counts  # never sent (Undeliverable): unrun
            if ran:
                with service._lock:
                    service._settle_detached(future, ok, value, later)
            else:
                self._skipped.append(future)
        with service._lock:
            service._requeue(self._skipped, later)
        later.run()
