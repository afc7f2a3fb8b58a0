"""Source doubles: an ``IngressSource`` the test feeds through a queue, and the
checks of a source's accounting.

``FedSource.receive`` waits on its queue only for ``ctx.remaining()``, so the
host can pause and stop it; the test puts items, an exception to raise, or
``END``. Nothing here sleeps: tests wait on the records with ``wait_until``.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, List, Tuple

from plugin_service import IngressEvent, IngressSource, SourceExhausted
from support.checks import wait_until
from support.timing import HANG

#: Put into a FedSource: its next receive() raises SourceExhausted.
END = object()
#: Put into a FedSource: its to_event raises, with a secret in the message.
BAD = object()
SECRET = "hunter2-s3cr3t"


class FedSource(IngressSource):
    """Receives what the test puts into ``feed``: an item (made an event by
    ``make_event``, or taken as it is when it is an IngressEvent), an exception
    instance (raised by ``receive``), or ``END``. ``connect_errors`` are raised
    by the next connects, one each. Records connects, closes, acks and sends."""

    def __init__(self, *connect_errors: BaseException) -> None:
        self.feed: "queue.Queue[Any]" = queue.Queue()
        self.connect_errors = list(connect_errors)
        self.connects = 0
        self.closes = 0
        self.receive_threads: List[str] = []
        self.lock = threading.Lock()

    def connect(self) -> None:
        self.connects += 1
        if self.connect_errors:
            raise self.connect_errors.pop(0)

    def receive(self, ctx: Any) -> Any:
        self.receive_threads.append(threading.current_thread().name)
        try:
            item = self.feed.get(timeout=ctx.remaining())
        except queue.Empty:
            return None
        if item is END:
            raise SourceExhausted()
        if isinstance(item, BaseException):
            raise item
        return (item,)

    def to_event(self, item: Tuple[Any]) -> Any:
        value = item[0]
        if value is BAD:
            raise ValueError("cannot parse item, password=%s" % SECRET)
        if isinstance(value, IngressEvent):
            return value
        return self.make_event(value)

    def close(self) -> None:
        self.closes += 1

    def put(self, *items: Any) -> None:
        for item in items:
            self.feed.put(item)


class AckingSource(FedSource):
    """Records ``(payload, outcome)`` for every ``on_outcome`` call; an outcome
    is "cancelled", the result, or the exception's type name."""

    def __init__(self) -> None:
        super().__init__()
        self.acks: List[Tuple[Any, Any]] = []

    def on_outcome(self, event: Any, future: Any) -> None:
        assert future.done()
        if future.cancelled():
            outcome: Any = "cancelled"
        elif future.exception() is not None:
            outcome = type(future.exception()).__name__
        else:
            outcome = future.result()
        with self.lock:
            self.acks.append((event.payload, outcome))


class SendingSource(FedSource):
    """Can send: records what ``send`` was given, on which thread."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: List[Tuple[Any, str]] = []

    def send(self, data: Any) -> None:
        self.sent.append((data, threading.current_thread().name))


def assert_source_invariant(status: Any) -> None:
    """received == submitted + rejected + dropped, plus at most one in between."""
    settled = status.submitted + status.rejected + status.dropped
    assert settled <= status.received <= settled + 1, status


def settled(handle: Any, received: int, timeout: float = HANG) -> Any:
    """Wait until ``received`` items were read and each was settled; the status."""
    def done() -> bool:
        status = handle.status()
        return status.received >= received and (
            status.submitted + status.rejected + status.dropped == status.received)
    wait_until(done, timeout, "%d items settled by source %r" % (received, handle.name))
    return handle.status()
