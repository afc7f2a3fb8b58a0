"""What every scenario shares: the run's error, bounded waits, daemon threads, running alone.

Only the standard library and the harness: ``scale``'s child processes import it too.
Plugin doubles, host set-up and the baselines' consumers are in ``_workloads``.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any, Callable, Iterable, Optional, Sequence

from ._cli import Builder, main

__all__ = [
    "BenchmarkError",
    "WAIT_S",
    "LATENCY_PIN_REASON",
    "check_count",
    "start_thread",
    "wait_all",
    "run_alone",
]

#: Why the single-operation latency scenarios run on one CPU (``Scenario.pin_reason``).
LATENCY_PIN_REASON = (
    "a round trip is two thread hand-offs; spread over this shared machine's CPUs "
    "each repetition landed in one of two modes (~18 or ~47 µs) at random, which "
    "broke same-run ratios; on one CPU they repeat within ~1% (--no-pin to compare)")

#: How long a repetition may wait for its work before the run is declared hung.
WAIT_S = 120.0


class BenchmarkError(RuntimeError):
    """A variant did not do the work it was timed for."""


def check_count(variant: str, done: Any, expected: int, what: str = "events handled") -> None:
    """Raise BenchmarkError unless ``done`` (a count taken outside the clock) is ``expected``."""
    if done != expected:
        raise BenchmarkError("%s: %d of %d %s" % (variant, done, expected, what))


def start_thread(target: Callable[[], Any], name: str = "bench-consumer") -> threading.Thread:
    """Start a daemon thread (a hung run must not keep the interpreter alive)."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def wait_all(futures: Iterable[Future], what: str, timeout: Optional[float] = WAIT_S) -> None:
    """Wait for every future, bounded; raise BenchmarkError if some are not done."""
    futures = list(futures)
    _, pending = wait_futures(futures, timeout=timeout)
    if pending:
        raise BenchmarkError("%s: %d of %d futures not done after %.0f s"
                             % (what, len(pending), len(futures), timeout or 0))


def run_alone(build: Builder, module: str, argv: Optional[Sequence[str]] = None) -> int:
    """Run one scenario module's ``build`` as ``python -m <module>`` would."""
    return main([build], argv, prog="python -m %s" % module)
