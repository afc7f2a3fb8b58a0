"""The sources that come with the library: a timer and an iterable."""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, Optional, Tuple

from .._events import IngressEvent
from .base import IngressSource, SourceContext, SourceExhausted

__all__ = ["TimerSource", "IterableSource"]


class TimerSource(IngressSource):
    """An event of ``kind`` carrying ``payload`` every ``every`` seconds.

    The schedule is fixed-rate on the monotonic clock, from the moment the
    source connects (its service's first start): tick *n* is due ``n * every``
    seconds after it, whenever the one before was delivered, so ticks do not
    drift. A tick that cannot be delivered on time (the reader was blocked on a
    full queue, paused, or its service was not running) is not piled up: the
    source delivers one tick as soon as it can and skips the others it missed,
    counting them in :attr:`skipped`. Raises ``ValueError`` for an ``every``
    that is not a number > 0.
    """

    # The clock of the schedule: a seam for tests with a clock of their own.
    _clock = staticmethod(time.monotonic)

    def __init__(self, every: float, *, kind: str = "tick", payload: Any = None) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, float)) \
                or not every > 0 or every == float("inf"):
            raise ValueError("every must be a number of seconds > 0, got %r" % (every,))
        self.every = float(every)
        self.kind = kind
        self.payload = payload
        self._next: Optional[float] = None
        self._ticks = 0
        self._skipped = 0

    @property
    def ticks(self) -> int:
        """Ticks delivered to the host so far."""
        return self._ticks

    @property
    def skipped(self) -> int:
        """Ticks that came due while the previous one was still undelivered."""
        return self._skipped

    def connect(self) -> None:
        if self._next is None:  # the schedule survives a reconnect
            self._next = self._clock() + self.every

    def receive(self, ctx: SourceContext) -> Any:
        due = self._next
        assert due is not None  # connect() set it
        now = self._clock()
        if now < due:
            left = ctx.remaining()
            ctx.wait(due - now if left is None else min(due - now, left))
            now = self._clock()
            if now < due:
                return None
        missed = int((now - due) // self.every)
        self._skipped += missed
        self._next = due + (missed + 1) * self.every
        self._ticks += 1
        return self._ticks

    def to_event(self, item: Any) -> IngressEvent:
        return self.make_event(self.payload, kind=self.kind)


class IterableSource(IngressSource):
    """The items of ``iterable``, in order, then the end (state ``stopped``).

    An item that is an ``IngressEvent`` is submitted as it is; any other item
    (None included) becomes the payload of an event of kind ``"event"``
    addressed to the source's ingress. The iterable is iterated on the
    source's thread, once: after a failure (its ``next()`` raised) the source
    goes on with the same iterator. ``next()`` should not block for long: the
    host cannot pause or stop the source while it does.
    """

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable
        self._iterator: Optional[Iterator[Any]] = None

    def connect(self) -> None:
        if self._iterator is None:
            self._iterator = iter(self._iterable)

    def receive(self, ctx: SourceContext) -> Any:
        assert self._iterator is not None  # connect() set it
        try:
            item = next(self._iterator)
        except StopIteration:
            raise SourceExhausted() from None
        return (item,)  # boxed: an item None is an item, not "nothing arrived"

    def to_event(self, item: Tuple[Any]) -> IngressEvent:
        value = item[0]
        if isinstance(value, IngressEvent):
            return value
        return self.make_event(value)
