"""Checks on what the runtime reports: the accounting invariants, and outcomes."""
from __future__ import annotations

import time
from typing import Any

from support.timing import HANG


def assert_invariants(status: Any) -> None:
    """The two accounting invariants of the contract, on one snapshot."""
    c = status.counters
    assert c.enqueued == (c.succeeded + c.failed + c.timed_out + c.dropped
                          + status.queue_depth + status.in_flight), status
    assert c.dispatched == c.succeeded + c.failed + c.timed_out + status.in_flight, status


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
