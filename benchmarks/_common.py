"""What several scenarios share: the no-op service, consumer threads, bounded waits."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any, Callable, Iterable, Optional

from plugin_service import Ingress, IngressEvent, ServicePlugin

pykka: Any
try:
    import pykka
except ImportError:  # pykka comes with the ``bench`` extra; without it its rows are skipped
    pykka = None

__all__ = [
    "BenchmarkError",
    "WAIT_S",
    "LATENCY_PIN_REASON",
    "INGRESS",
    "NoOpService",
    "noop",
    "start_thread",
    "wait_all",
    "pykka",
    "PYKKA_MISSING",
]

#: Why the single-operation latency scenarios run on one CPU (``Scenario.pin_reason``).
LATENCY_PIN_REASON = (
    "a round trip is two thread hand-offs; spread over this shared machine's CPUs "
    "each repetition landed in one of two modes (~18 or ~47 µs) at random, which "
    "broke same-run ratios; on one CPU they repeat within ~1% (--no-pin to compare)")

#: How long a repetition may wait for its work before the run is declared hung.
WAIT_S = 120.0
INGRESS = "bench"
PYKKA_MISSING = "pykka is not importable: its rows are skipped (pip install pykka)"


class BenchmarkError(RuntimeError):
    """A variant did not do the work it was timed for."""


def noop(*args: Any) -> None:
    return None


class NoOpService(ServicePlugin):
    """A service whose handler does nothing and returns None."""

    ingresses = [Ingress(INGRESS)]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> None:
        return None


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
