"""Scenario 3, timeout precision: how late timeouts arrive after their deadlines.

Lateness is the time a future resolved (a done-callback's ``time.monotonic()``
stamp, taken on the thread that resolved it) minus its deadline, in µs; a
repetition runs several waves and reports p50 and p99 over all of them.

* **DispatchTimeout**: 100 services in one host, each holding one timed event at
  once (``ServiceConfig(dispatch_timeout=T, fail_after=None)``). The handler
  records ``ctx.deadline`` (set as it is invoked) and waits on ``ctx.wait()``,
  which returns as soon as the watchdog cancels it.
* **ToolTimeout**: 100 timed calls at once to one tool (``timeout=T``) on a host
  with ``tool_workers=100``, so every call holds a pool thread. The tool records
  ``ctx.deadline`` (deadlines count from submission) and waits on ``ctx.wait()``.
* **timer floor** (the baseline): one timer thread with a heap of the 100
  deadlines under a condition, failing a plain ``Future`` at each: the least a
  watchdog can cost, with no counters, diagnostics or dead letters.

The issue's target is absolute: p99 within 10 ms of the deadline.

Run alone with ``python -m benchmarks.timeouts [--quick]``.
"""
from __future__ import annotations

import functools
import heapq
import itertools
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin, errors

from ._common import WAIT_S, BenchmarkError, run_alone, start_thread, wait_all
from ._harness import Limit, Metric, Options, Ratio, Sample, Scenario, Target, Variant, latency
from ._workloads import INGRESS, start_services

__all__ = ["build", "TIMED", "DEFAULT_TIMEOUT_S", "QUICK_TIMEOUT_S"]

TIMED = 100  # timed events (or calls) pending at once
DEFAULT_TIMEOUT_S = 0.05
QUICK_TIMEOUT_S = 0.02
DEFAULT_WAVES = 10
QUICK_WAVES = 3
TARGET_US = 10_000.0

LATE_P50 = Metric("p50_us", "late p50 µs", higher_is_better=False, spec=",.0f", unit="µs")
LATE_P99 = Metric("p99_us", "late p99 µs", higher_is_better=False, spec=",.0f", unit="µs")

_SOURCE = "benchmarks.timeouts"
_monotonic = time.monotonic


def _stamp(resolved: Dict[int, float], key: int, future: Future) -> None:
    resolved[key] = _monotonic()


def _lateness(resolved: Dict[int, float], deadlines: Dict[int, float]) -> Sample:
    if len(resolved) != len(deadlines):
        raise BenchmarkError("%d futures resolved, %d deadlines recorded"
                             % (len(resolved), len(deadlines)))
    return latency([resolved[key] - deadlines[key] for key in resolved])


def _check_raised(futures: Sequence[Future], error: type, what: str) -> None:
    wrong = [f.exception(0) for f in futures if not isinstance(f.exception(0), error)]
    if wrong:
        raise BenchmarkError("%s: %d futures did not raise %s, e.g. %r"
                             % (what, len(wrong), error.__name__, wrong[0]))


# ------------------------------------------------------------------- ours
class _Holder(ServicePlugin):
    """Holds each event until the watchdog cancels it; records its deadline."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self, deadlines: Dict[int, float]) -> None:
        self._deadlines = deadlines

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> None:
        self._deadlines[event.payload] = ctx.deadline
        ctx.wait(WAIT_S)


def _ours_dispatch(timeout: float, waves: int) -> Sample:
    deadlines: Dict[int, float] = {}
    resolved: Dict[int, float] = {}
    config = ServiceConfig(queue_size=4, dispatch_timeout=timeout, fail_after=None)
    with PluginHost() as host:
        handles = start_services(host, ("bench-timed-%03d" % k for k in range(TIMED)),
                                 functools.partial(_Holder, deadlines), config)
        for wave in range(waves):
            futures = []
            for k, handle in enumerate(handles):
                key = wave * TIMED + k
                future = handle.submit(IngressEvent(INGRESS, _SOURCE, key))
                future.add_done_callback(functools.partial(_stamp, resolved, key))
                futures.append(future)
            wait_all(futures, "dispatch timeouts")
            _check_raised(futures, errors.DispatchTimeout, "dispatch timeouts")
    return _lateness(resolved, deadlines)


def _ours_tool(timeout: float, waves: int) -> Sample:
    deadlines: Dict[int, float] = {}
    planned: Dict[int, float] = {}  # submission + timeout, for a call that never started
    resolved: Dict[int, float] = {}

    def hold(request: int, ctx: Any) -> None:
        deadlines[request] = ctx.deadline
        ctx.wait(WAIT_S)

    with PluginHost(tool_workers=TIMED) as host:
        host.add_tool("holder", hold, timeout=timeout)
        for wave in range(waves):
            futures = []
            for k in range(TIMED):
                key = wave * TIMED + k
                planned[key] = _monotonic() + timeout
                future = host.submit_tool("holder", key)
                future.add_done_callback(functools.partial(_stamp, resolved, key))
                futures.append(future)
            wait_all(futures, "tool timeouts")
            _check_raised(futures, errors.ToolTimeout, "tool timeouts")
    return _lateness(resolved, {key: deadlines.get(key, planned[key]) for key in planned})


# ---------------------------------------------------------------- baseline
class _TimerFloor:
    """One thread, a heap of deadlines under a condition: fails each future at its own."""

    def __init__(self) -> None:
        self._due = threading.Condition(threading.Lock())
        self._heap: List[Tuple[float, int, Future]] = []
        self._order = itertools.count()
        self._closed = False
        self._thread = start_thread(self._run, "bench-timer-floor")

    def schedule(self, deadline: float, future: Future) -> None:
        with self._due:
            heapq.heappush(self._heap, (deadline, next(self._order), future))
            if self._heap[0][2] is future:
                self._due.notify()

    def _next(self) -> Optional[Future]:
        with self._due:
            heap = self._heap
            while not self._closed:
                if not heap:
                    self._due.wait()
                    continue
                delay = heap[0][0] - _monotonic()
                if delay <= 0:
                    return heapq.heappop(heap)[2]
                self._due.wait(delay)
            return None

    def _run(self) -> None:
        while True:
            future = self._next()
            if future is None:
                return
            future.set_exception(TimeoutError("deadline passed"))

    def close(self) -> None:
        with self._due:
            self._closed = True
            self._due.notify()
        self._thread.join(WAIT_S)


def _floor(timeout: float, waves: int) -> Sample:
    deadlines: Dict[int, float] = {}
    resolved: Dict[int, float] = {}
    timer = _TimerFloor()
    try:
        for wave in range(waves):
            futures = []
            for k in range(TIMED):
                key = wave * TIMED + k
                future: Future = Future()
                future.add_done_callback(functools.partial(_stamp, resolved, key))
                deadline = deadlines[key] = _monotonic() + timeout
                timer.schedule(deadline, future)
                futures.append(future)
            wait_all(futures, "timer floor")
            _check_raised(futures, TimeoutError, "timer floor")
    finally:
        timer.close()
    return _lateness(resolved, deadlines)


def build(options: Options) -> Scenario:
    """The timeout-precision scenario for ``options`` (quick: shorter, fewer waves)."""
    timeout = QUICK_TIMEOUT_S if options.quick else DEFAULT_TIMEOUT_S
    waves = QUICK_WAVES if options.quick else DEFAULT_WAVES

    def run(fn: Callable[[float, int], Sample]) -> Callable[[], Sample]:
        return functools.partial(fn, timeout, waves)

    limit = Target("<=", TARGET_US)
    return Scenario(
        name="timeouts",
        title="%d timed events (calls) pending at once, timeout %g ms, %d waves"
              % (TIMED, timeout * 1e3, waves),
        metrics=(LATE_P50, LATE_P99),
        variants=(
            Variant("ours_dispatch", "DispatchTimeout", run(_ours_dispatch), ours=True),
            Variant("ours_tool", "ToolTimeout", run(_ours_tool), ours=True),
            Variant("floor", "timer floor", run(_floor)),
        ),
        baseline="floor",
        ratios=(Ratio("DispatchTimeout / floor", "ours_dispatch", "floor", LATE_P99.key),
                Ratio("ToolTimeout / floor", "ours_tool", "floor", LATE_P99.key)),
        limits=(Limit("ours_dispatch", LATE_P99.key, limit),
                Limit("ours_tool", LATE_P99.key, limit)),
        params={"timed_at_once": TIMED, "timeout_s": timeout, "waves": waves,
                "tool_workers": TIMED},
        notes=("lateness = done-callback stamp - deadline; dispatch: 100 services each "
               "holding one timed event; tool: 100 timed calls, each on its own pool "
               "thread; the issue's target is absolute (p99 <= 10 ms)",),
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(build, "benchmarks.timeouts", argv)


if __name__ == "__main__":
    sys.exit(run())
