"""Latency histograms: fixed bucket bounds, and a recorder cheap enough for the hot path.

An observation is one ``list.append`` under the lock its owner already holds;
the recorder folds its pending observations into the counts in batches (sort
once, then one bisection per bound), so the per-event cost does not grow with
the number of buckets. A snapshot folds what is pending first, so what it
reports is exact.
"""
from __future__ import annotations

from bisect import bisect_right
from typing import List, Tuple

import attrs

__all__ = ["LATENCY_BUCKETS", "LatencyHistogram", "LatencyRecorder"]

#: The upper bounds, in seconds, of every latency histogram's buckets:
#: Prometheus's default latency buckets (5 ms to 10 s) and five finer ones below
#: them, since handing an event over in-process takes microseconds.
LATENCY_BUCKETS: Tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

#: Pending observations a recorder keeps before it folds them into its counts.
FOLD_AT = 256


def _no_buckets() -> Tuple[Tuple[float, int], ...]:
    return tuple((bound, 0) for bound in LATENCY_BUCKETS)


@attrs.frozen
class LatencyHistogram:
    """Durations in seconds, as a Prometheus histogram has them.

    ``buckets`` pairs every bound of ``LATENCY_BUCKETS`` with how many durations
    were at most that long (cumulative, so the counts never decrease along it);
    ``count`` is how many there were in all (the ``+Inf`` bucket) and ``sum``
    their total in seconds.
    """

    buckets: Tuple[Tuple[float, int], ...] = attrs.field(factory=_no_buckets)
    count: int = 0
    sum: float = 0.0


class LatencyRecorder(List[float]):
    """The durations observed and not folded yet (its items) and the counts so far.

    Not thread-safe: its owner appends, folds and snapshots it under the one lock
    that already guards the owner's counters (no lock of its own, none taken per
    observation). The hot path appends directly and calls :meth:`fold` once
    ``len(recorder) >= FOLD_AT``; :meth:`observe` does both.
    """

    __slots__ = ("_counts", "_count", "_sum")

    def __init__(self) -> None:
        super().__init__()
        self._counts: List[int] = [0] * len(LATENCY_BUCKETS)  # cumulative
        self._count = 0
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one duration (owner's lock held)."""
        self.append(seconds)
        if len(self) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Add the pending durations to the counts (owner's lock held)."""
        if not self:
            return
        self.sort()
        counts = self._counts
        for index, bound in enumerate(LATENCY_BUCKETS):
            counts[index] += bisect_right(self, bound)
        self._count += len(self)
        self._sum += sum(self)
        self.clear()

    def snapshot(self) -> LatencyHistogram:
        """Everything observed so far (owner's lock held)."""
        self.fold()
        return LatencyHistogram(tuple(zip(LATENCY_BUCKETS, self._counts)),
                                self._count, self._sum)
