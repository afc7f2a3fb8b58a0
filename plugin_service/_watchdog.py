"""One timer thread per host: dispatch deadlines, cancel graces, start and stop
bounds, restart backoffs.

Timers are cancelled lazily (a flag), so scheduling and cancelling are cheap and the
thread sleeps until the earliest live deadline: no polling. Callbacks run on the
watchdog thread and must be short; they never call plugin code.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from loguru import logger

from ._guarded import failure_log, text_of

__all__ = ["Watchdog", "Timer"]

_monotonic = time.monotonic


class Timer:
    """A scheduled callback; ``cancel()`` makes it a no-op."""

    __slots__ = ("when", "callback", "args", "cancelled", "_watchdog")

    def __init__(self, when: float, callback: Callable[..., Any], args: Tuple[Any, ...],
                 watchdog: "Optional[Watchdog]" = None) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self._watchdog = watchdog

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._watchdog is not None:
                self._watchdog._count_cancelled()


# Cancelled timers stay in the heap until they surface; once they outnumber the
# live ones (and there are enough to matter) the heap is rebuilt without them, so
# many short calls with long timeouts cannot grow it without bound.
_COMPACT_AT = 256


class Watchdog:
    """Runs callbacks at monotonic deadlines on one lazily started thread."""

    def __init__(self, name: str = "plugin_service-watchdog") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._timer_due = threading.Condition(self._lock)
        self._heap: List[Tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._cancelled = 0

    def _count_cancelled(self) -> None:
        with self._lock:
            self._cancelled += 1
            heap = self._heap
            if self._cancelled > _COMPACT_AT and self._cancelled * 2 > len(heap):
                heap[:] = [entry for entry in heap if not entry[2].cancelled]
                heapq.heapify(heap)
                self._cancelled = 0

    def schedule(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the watchdog thread at monotonic time ``when``."""
        timer = Timer(when, callback, args, self)
        with self._lock:
            if self._closed:
                timer.cancelled = True
                return timer
            heap = self._heap
            heapq.heappush(heap, (when, next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif heap[0][2] is timer:
                self._timer_due.notify()
        return timer

    def _next_due(self) -> Optional[Timer]:
        with self._lock:
            heap = self._heap
            while not self._closed:
                if not heap:
                    self._timer_due.wait()
                    continue
                when = heap[0][0]
                delay = when - _monotonic()
                if delay <= 0:
                    return heapq.heappop(heap)[2]
                # Capped: a far deadline (an expires_at in a year) would overflow.
                self._timer_due.wait(min(delay, threading.TIMEOUT_MAX))
            return None

    def _run(self) -> None:
        while True:
            timer = self._next_due()
            if timer is None:
                return
            if timer.cancelled:
                with self._lock:
                    self._cancelled = max(0, self._cancelled - 1)
                continue
            try:
                timer.callback(*timer.args)
            except BaseException as exc:  # a bug in a callback must not kill every timeout
                logger.error("watchdog callback {} failed: {}", text_of(timer.callback, 200),
                             failure_log(exc))

    @property
    def thread(self) -> Optional[threading.Thread]:
        return self._thread

    def close(self, timeout: Optional[float] = None) -> None:
        """Drop every pending timer and join the thread."""
        with self._lock:
            self._closed = True
            self._heap.clear()
            self._timer_due.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
