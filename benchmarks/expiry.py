"""Expiry precision (issue 15): how late queued events expire past their deadlines.

1,000 events wait in one service's queue behind a handler held at a gate; each
has a deadline, and lateness is the time its future resolved with
``EventExpired`` (a done-callback's ``time.monotonic()`` stamp, on the thread
that resolved it) minus that deadline, in µs. The deadlines are spread over
100 ms, so the service's one expiry timer is re-armed many times.

* **expires_at**: each event's own ``expires_at``, in shuffled order (the heap
  does the ordering); its deadline on the monotonic clock is taken at submit.
* **max_queue_age**: ``ServiceConfig(max_queue_age=A)``, events submitted in
  batches over the 100 ms, so their deadlines follow the queue's order; the
  deadline is taken just before each submit (acceptance comes after, so the
  lateness is a hair over-stated).
* **timer floor** (the baseline): one timer thread with a heap of the 1,000
  deadlines failing a plain ``Future`` at each (``timeouts``' floor).

Run alone with ``python -m benchmarks.expiry [--quick]``.
"""
from __future__ import annotations

import datetime as dt
import functools
import random
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Optional, Sequence

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin, errors

from ._common import WAIT_S, BenchmarkError, run_alone, wait_all
from ._harness import Limit, Options, Ratio, Sample, Scenario, Target, Variant
from ._workloads import INGRESS
from .timeouts import LATE_P50, LATE_P99, TARGET_US, _check_raised, _lateness, _stamp, _TimerFloor

__all__ = ["build", "QUEUED"]

QUEUED = 1000  # events waiting behind the held handler
QUICK_QUEUED = 100
LEAD_S = 0.05  # the earliest deadline, after the last submit begins
SPREAD_S = 0.1  # the deadlines' spread

_SOURCE = "benchmarks.expiry"
_UTC = dt.timezone.utc
_monotonic = time.monotonic


class _Held(ServicePlugin):
    """Holds the first event at a gate until every queued one expired."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self, entered: threading.Event, gate: threading.Event) -> None:
        self._entered = entered
        self._gate = gate

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> None:
        self._entered.set()
        self._gate.wait(WAIT_S)


def _behind_a_held_handler(queued: int, config: ServiceConfig,
                           submit: Callable[[Any, int], Future]) -> Sample:
    deadlines: Dict[int, float] = {}
    resolved: Dict[int, float] = {}
    entered, gate = threading.Event(), threading.Event()
    with PluginHost() as host:
        handle = host.add_service("bench-expiry", _Held(entered, gate), config)
        handle.start()
        try:
            handle.submit(IngressEvent(INGRESS, _SOURCE, "held"))
            if not entered.wait(WAIT_S):
                raise BenchmarkError("the held handler never started")
            futures = []
            for key in range(queued):
                future = submit(handle, key)
                deadlines[key] = future._bench_deadline  # type: ignore[attr-defined]
                future.add_done_callback(functools.partial(_stamp, resolved, key))
                futures.append(future)
            wait_all(futures, "expiries")
            _check_raised(futures, errors.EventExpired, "expiries")
        finally:
            gate.set()
    return _lateness(resolved, deadlines)


def _ours_expires_at(queued: int) -> Sample:
    offsets = [LEAD_S + SPREAD_S * k / queued for k in range(queued)]
    random.Random(15).shuffle(offsets)

    def submit(handle: Any, key: int) -> Future:
        now, mono = dt.datetime.now(_UTC), _monotonic()
        offset = offsets[key]
        future = handle.submit(IngressEvent(
            INGRESS, _SOURCE, key, expires_at=now + dt.timedelta(seconds=offset)))
        future._bench_deadline = mono + offset
        return future  # type: ignore[no-any-return]

    return _behind_a_held_handler(queued, ServiceConfig(queue_size=queued + 1), submit)


def _ours_max_queue_age(queued: int) -> Sample:
    began = _monotonic()

    def submit(handle: Any, key: int) -> Future:
        # Paced so the deadlines spread over SPREAD_S in the queue's order.
        target = began + SPREAD_S * key / queued
        while _monotonic() < target:
            time.sleep(0.0005)
        deadline = _monotonic() + LEAD_S
        future = handle.submit(IngressEvent(INGRESS, _SOURCE, key))
        future._bench_deadline = deadline
        return future  # type: ignore[no-any-return]

    config = ServiceConfig(queue_size=queued + 1, max_queue_age=LEAD_S)
    return _behind_a_held_handler(queued, config, submit)


def _floor(queued: int) -> Sample:
    deadlines: Dict[int, float] = {}
    resolved: Dict[int, float] = {}
    offsets = [LEAD_S + SPREAD_S * k / queued for k in range(queued)]
    random.Random(15).shuffle(offsets)
    timer = _TimerFloor()
    try:
        futures: List[Future] = []
        for key in range(queued):
            future: Future = Future()
            future.add_done_callback(functools.partial(_stamp, resolved, key))
            deadline = deadlines[key] = _monotonic() + offsets[key]
            timer.schedule(deadline, future)
            futures.append(future)
        wait_all(futures, "timer floor")
        _check_raised(futures, TimeoutError, "timer floor")
    finally:
        timer.close()
    return _lateness(resolved, deadlines)


def build(options: Options) -> Scenario:
    """The expiry-precision scenario for ``options`` (quick: 100 events)."""
    queued = QUICK_QUEUED if options.quick else QUEUED

    def run(fn: Callable[[int], Sample]) -> Callable[[], Sample]:
        return functools.partial(fn, queued)

    limit = Target("<=", TARGET_US)
    return Scenario(
        name="expiry",
        title="%d queued events behind a held handler expire, deadlines over %g ms"
              % (queued, SPREAD_S * 1e3),
        metrics=(LATE_P50, LATE_P99),
        variants=(
            Variant("ours_expires_at", "expires_at", run(_ours_expires_at), ours=True),
            Variant("ours_max_queue_age", "max_queue_age", run(_ours_max_queue_age),
                    ours=True),
            Variant("floor", "timer floor", run(_floor)),
        ),
        baseline="floor",
        ratios=(Ratio("expires_at / floor", "ours_expires_at", "floor", LATE_P99.key),
                Ratio("max_queue_age / floor", "ours_max_queue_age", "floor",
                      LATE_P99.key)),
        limits=(Limit("ours_expires_at", LATE_P99.key, limit),
                Limit("ours_max_queue_age", LATE_P99.key, limit)),
        params={"queued": queued, "lead_s": LEAD_S, "spread_s": SPREAD_S},
        notes=("lateness = done-callback stamp - deadline; one service, its handler "
               "held, every queued event expiring; target p99 <= 10 ms, as timeouts",),
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(build, "benchmarks.expiry", argv)


if __name__ == "__main__":
    sys.exit(run())
