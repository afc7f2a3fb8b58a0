"""Checks on what the runtime reports: the accounting invariants, and outcomes."""
from __future__ import annotations

import time
from typing import Any

from support.timing import HANG


def assert_invariants(status: Any) -> None:
    """The accounting invariants of the contract, on one snapshot: the two of the
    counters, rejections by reason summing to ``rejected``, and the latency
    histograms (when kept) consistent, observing no event that did not end."""
    c = status.counters
    assert c.enqueued == (c.succeeded + c.failed + c.timed_out + c.dropped + c.expired
                          + status.queue_depth + status.in_flight), status
    assert c.dispatched == c.succeeded + c.failed + c.timed_out + status.in_flight, status
    assert sum(status.rejections.values()) == c.rejected, status
    for histogram in (status.queue_wait, status.handler_time):
        if histogram is not None:
            assert_histogram(histogram)
            assert histogram.count <= c.succeeded + c.failed, status


def assert_histogram(histogram: Any) -> None:
    """A latency histogram as Prometheus needs it: counts cumulative along the
    bounds, none above ``count``."""
    counts = [count for _bound, count in histogram.buckets]
    assert counts == sorted(counts) and all(count <= histogram.count for count in counts), \
        histogram
    assert histogram.sum >= 0.0, histogram


def outcome(future: Any, timeout: float = HANG) -> Any:
    """The exception a future resolved with, or its result when it succeeded."""
    error = future.exception(timeout=timeout)
    return error if error is not None else future.result(timeout=0)


def wait_until(predicate: Any, timeout: float = HANG, what: str = "condition") -> None:
    """Re-check ``predicate()`` (a read of public state) until it holds; fails the
    test after ``timeout``. For states no event announces, such as a producer
    parked in a full queue (its event is visible in ``status()`` first)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("%s did not hold within %.1fs" % (what, timeout))
        time.sleep(0.001)
