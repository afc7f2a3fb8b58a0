"""Event deadlines: an event whose deadline passes while it waits in the queue
is never handed to the plugin; it expires (``EventExpired``, a dead letter,
counted in ``expired``).

An event's queue deadline is the earlier of its own ``expires_at`` and, with
``ServiceConfig.max_queue_age``, its acceptance plus that age. Each accepted
event that has one carries a ``_Deadline`` and an entry in the service's heap;
expiry is decided where the worker would take the event (the head of the
queue), and by one watchdog timer per service, re-armed for the earliest entry,
for events stuck behind a slow handler. A service that never sees a deadline
pays one check per take (the heap is empty) and two per submit.

Entries go stale when their event leaves the queue another way (taken,
withdrawn, dropped): only an event still in the queue, found there under the
lock, is ever expired, so none ends with two outcomes.
"""
from __future__ import annotations

import collections
import datetime as _dt
import heapq
import itertools
import operator
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from .. import errors
from .._context import CallContext, DispatchContext
from .core import _K, _UTC, Deferred, _monotonic
from .ledger import Ledger

if TYPE_CHECKING:  # pragma: no cover
    from .._future import DispatchFuture

_order = itertools.count()  # heap ties: never compare two items
_event_expires = operator.attrgetter("event.expires_at")
_get_deadline = CallContext.__dict__["deadline"].__get__
_set_deadline = CallContext.__dict__["deadline"].__set__


class _Deadline:
    """The queue deadline of one accepted event (monotonic seconds).

    ``by``: which deadline it is (``"expires_at"`` or ``"max_queue_age"``);
    ``own``: the event's ``expires_at`` on the monotonic clock (None without
    one), which also bounds ``ctx.deadline`` once it is handled; ``queued``:
    it is in the queue as far as the heap knows (a hint: the queue decides).
    """

    __slots__ = ("at", "by", "own", "expires_at", "queued")

    def __init__(self, at: float, by: str, own: Optional[float],
                 expires_at: Optional[_dt.datetime]) -> None:
        self.at = at
        self.by = by
        self.own = own
        self.expires_at = expires_at
        self.queued = True


def deadline_of(item: Any) -> Optional[_Deadline]:
    """The ``_Deadline`` of a queued item (None: it never expires)."""
    return getattr(item, "_expiry", None)


class EventDeadlineContext(DispatchContext):
    """A ``DispatchContext`` whose ``deadline`` is never later than the event's
    own ``expires_at``: whatever the runtime sets it to (the dispatch deadline,
    or None), it reads the earlier of that and ``own``."""

    __slots__ = ("_own",)

    def __init__(self, event: Any, own: float) -> None:
        self._own = own
        super().__init__(event, None)

    @property  # over the slot of CallContext's: bounded by ``own``
    def deadline(self) -> Optional[float]:
        value: Optional[float] = _get_deadline(self)
        return value

    @deadline.setter
    def deadline(self, value: Optional[float]) -> None:
        own = self._own
        _set_deadline(self, own if value is None or value > own else value)


class Expiry(Ledger):
    """Deadlines of queued events (lock held unless said otherwise)."""

    __slots__ = ()

    if TYPE_CHECKING:  # pragma: no cover
        # The calls up the stack (the mailbox's and the in-flight part's).
        def _enqueue_slow(self, batch: Sequence[Any], block: bool, timeout: Optional[float]
                          ) -> Tuple[int, Optional[errors.PluginServiceError]]: ...

        def _take(self, items: "collections.deque[DispatchFuture]", timeout: Optional[float]
                  ) -> Tuple["DispatchFuture", DispatchContext]: ...

    def _deadline_of(self, event: Any) -> Optional[_Deadline]:
        """The queue deadline of ``event`` accepted now, if it has one (no lock)."""
        expires = event.expires_at
        age = self._max_queue_age
        now = _monotonic()
        own = None
        if expires is not None:
            own = now + (expires - _dt.datetime.now(_UTC)).total_seconds()
        self._expiry_on = True  # sticky: from now on, _enqueue_slow registers
        if age is not None and (own is None or now + age < own):
            return _Deadline(now + age, "max_queue_age", own, expires)
        if own is None:
            return None
        return _Deadline(own, "expires_at", own, expires)

    def _stamp_deadlines(self, items: Sequence[Any]) -> None:
        """Give each of ``items`` (about to be queued) its deadline, if any."""
        if self._max_queue_age is None and not any(map(_event_expires, items)):
            return
        for item in items:
            item._expiry = self._deadline_of(item.event)

    def _enqueue_expiring(self, item: Any, event: Any, block: bool,
                          timeout: Optional[float]) -> Any:
        """``submit``'s path for an event with a deadline (see ``_enqueue``)."""
        item._expiry = self._deadline_of(event)
        error = self._enqueue_slow((item,), block, timeout)[1]
        if error is not None:
            raise self._reject(error, event)
        return item

    def _register(self, queued: Sequence[Any]) -> None:
        """``queued`` were just appended to the queue: their deadlines join the
        heap, and the timer is armed for the earliest."""
        heap = self._expiry_heap
        for item in queued:
            record = getattr(item, "_expiry", None)
            if record is not None:
                record.queued = True
                heapq.heappush(heap, (record.at, next(_order), item))
        if not heap:
            return
        if len(heap) > 2 * len(self._items) + 64:  # mostly stale: taken meanwhile
            self._rebuild_heap()
        if heap:
            self._arm_expiry(heap[0][0])

    def _rebuild_heap(self) -> None:
        heap = self._expiry_heap
        heap[:] = [(record.at, next(_order), item) for item in self._items
                   for record in (getattr(item, "_expiry", None),) if record is not None]
        heapq.heapify(heap)

    def _arm_expiry(self, at: float) -> None:
        """Make the service's one expiry timer fire by ``at``: an earlier need
        cancels the armed timer and schedules one in its place."""
        timer = self._expiry_timer
        if timer is not None:
            if not timer.cancelled and timer.when <= at:
                return
            timer.cancel()
        self._expiry_timer = self._runtime.watchdog.schedule(at, self._on_expiry_timer, at)

    def _on_expiry_timer(self, at: float) -> None:
        """On the watchdog: expire every queued event whose deadline passed."""
        later = Deferred()
        with self._lock:
            timer = self._expiry_timer
            if timer is not None and timer.when == at:
                self._expiry_timer = None
            heap = self._expiry_heap
            now = _monotonic()
            due: Dict[int, Any] = {}
            while heap and heap[0][0] <= now:
                item = heapq.heappop(heap)[2]
                record = getattr(item, "_expiry", None)
                if record is not None and record.queued and record.at <= now:
                    due[id(item)] = item
            if due:
                self._expire_queued(due, now, later)
            if heap:
                self._arm_expiry(heap[0][0])
        later.run()

    def _expire_queued(self, due: Dict[int, Any], now: float, later: Deferred) -> None:
        """Expire those of ``due`` still in the queue (by ``id``)."""
        items = self._items
        while items and id(items[0]) in due:  # deadlines mostly follow the FIFO
            item = items.popleft()
            del due[id(item)]
            self._expire(item, now, later)
        if due:
            kept = []
            for item in items:
                if id(item) in due:
                    self._expire(item, now, later)
                else:
                    kept.append(item)
            items.clear()
            items.extend(kept)
        if self._producers_waiting:
            self._not_full.notify_all()

    def _expire_head(self, later: Deferred) -> None:
        """Where the worker would take an event: expire the expired ones at the
        front of the queue (their futures resolve through ``later``)."""
        items = self._items
        now = _monotonic()
        expired = False
        while items:
            record = getattr(items[0], "_expiry", None)
            if record is None or record.at > now:
                break
            self._expire(items.popleft(), now, later)
            expired = True
        if expired and self._producers_waiting:
            self._not_full.notify_all()

    def _expire(self, item: Any, now: float, later: Deferred) -> None:
        """Record ``item``, just taken out of the queue, as expired."""
        record: _Deadline = item._expiry
        record.queued = False
        late = now - record.at
        self._expired += 1
        why = "%s passed %.3gs before it could be handed over" % (record.by, late)
        diagnostic = self._note(_K.EVENT_EXPIRED, "event expired in the queue: " + why,
                                item._cid)
        self._dead_letter(item.event, diagnostic, later)
        if record.by == "expires_at" and record.expires_at is not None:
            wall = record.expires_at.astimezone(_UTC)
        else:
            wall = _dt.datetime.now(_UTC) - _dt.timedelta(seconds=late)
        later.add(item.set_exception, errors.EventExpired(
            "service %r: event expired in the queue (%s); never handed to the plugin"
            % (self.name, why), service=self.name, correlation_id=item._cid,
            deadline=wall, late=late, expired_by=record.by))

    def _take_unexpired(self, items: "collections.deque[DispatchFuture]",
                        timeout: Optional[float], later: Deferred
                        ) -> Optional[Tuple[Any, DispatchContext]]:
        """Under the lock, with an event to take: take it, unless expired ones
        were at the front: those expire (their futures resolve in ``later``,
        to run before the next take) and the answer is None."""
        if not self._expiry_heap:
            return self._take(items, timeout)
        self._expire_head(later)
        if later._calls:
            return None
        return self._take_expiring(items, timeout)

    def _take_expiring(self, items: "collections.deque[DispatchFuture]",
                       timeout: Optional[float]) -> Tuple[Any, DispatchContext]:
        """``_take`` of a head known not to be expired, with deadlines about:
        its entry leaves the heap, and its context keeps its own deadline."""
        future, ctx = self._take(items, timeout)
        record = getattr(future, "_expiry", None)
        if record is not None:
            record.queued = False
            heap = self._expiry_heap
            if heap and heap[0][2] is future:
                heapq.heappop(heap)
            if record.own is not None:
                ctx = self._current_ctx = EventDeadlineContext(future.event, record.own)
        return future, ctx
