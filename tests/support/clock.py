"""A manual clock: time moves only when a test says so."""
from __future__ import annotations

import threading


class ManualClock:
    """A monotonic clock for a seam that looks one up: ``clock()`` is the time,
    ``advance(seconds)`` moves it on. Safe to read from any thread."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
