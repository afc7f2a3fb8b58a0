"""Scenario 5, isolation: does a saturated side slow the other one down?

Two pairs of variants, each measured against its own idle twin in the same run:

* **service round trip** (submit + ``result()`` of a no-op event, one at a time)
  on a host with ``tool_workers=4``: *idle*, and with the tool pool *saturated*,
  every pool thread inside a slow tool and as many calls again queued behind them.
* **tool call** (``call_tool`` on a no-op tool, one at a time) on a host with 100
  running services: *idle*, and with all 100 *saturated*, each handler held inside
  a slow event and each queue full behind it.

A slow tool or handler blocks on a ``threading.Event``; the set-up waits until
every one of them is inside its call before the clock starts, and sets the
events after it stops, so everything is released and checked outside the clock.
The idle twins run on the same host shape, with nothing held.

Run alone with ``python -m benchmarks.isolation [--quick]``.
"""
from __future__ import annotations

import functools
import sys
import threading
from time import perf_counter
from typing import Any, Callable, List, Optional, Sequence

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin

from ._common import LATENCY_PIN_REASON, WAIT_S, BenchmarkError, run_alone, wait_all
from ._harness import P50_US, P99_US, Options, Ratio, Sample, Scenario, Target, Variant, latency
from ._workloads import INGRESS, noop_tool, start_services

__all__ = ["build", "DEFAULT_OPS", "QUICK_OPS", "TOOL_WORKERS", "SERVICES"]

DEFAULT_OPS = 10_000
QUICK_OPS = 2_000
TOOL_WORKERS = 4
SERVICES = 100
SERVICE_QUEUE = 8

_SOURCE = "benchmarks.isolation"
_SLOW = "slow"  # the payload that makes a handler hold


class _Gate:
    """Holds every slow call until ``release()``; ``wait_entered(n)`` for the set-up."""

    def __init__(self) -> None:
        self._released = threading.Event()
        self._entered = 0
        self._changed = threading.Condition()

    def hold(self) -> None:
        with self._changed:
            self._entered += 1
            self._changed.notify_all()
        if not self._released.wait(WAIT_S):
            raise BenchmarkError("a held call was never released")

    def wait_entered(self, count: int) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._entered >= count, WAIT_S):
                raise BenchmarkError("only %d of %d slow calls started"
                                     % (self._entered, count))

    def release(self) -> None:
        self._released.set()


class _Service(ServicePlugin):
    """No-op, except that a ``_SLOW`` payload holds the handler at the gate."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self, gate: _Gate) -> None:
        self._gate = gate

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> None:
        if event.payload is _SLOW:
            self._gate.hold()


def _timed(n: int, operation: Callable[[int], Any]) -> List[float]:
    clock = perf_counter
    times: List[float] = []
    record = times.append
    for i in range(n):
        began = clock()
        operation(i)
        record(clock() - began)
    return times


# --------------------------------------------- service round trip vs tools
def _round_trips(n: int, saturate: bool) -> Sample:
    gate = _Gate()
    held: List[Any] = []
    with PluginHost(tool_workers=TOOL_WORKERS) as host:
        try:
            host.add_tool("slow", lambda request, ctx: gate.hold())
            [handle] = start_services(host, ["bench-isolated"],
                                      functools.partial(_Service, gate), ServiceConfig())
            if saturate:
                held = [host.submit_tool("slow", k) for k in range(2 * TOOL_WORKERS)]
                gate.wait_entered(TOOL_WORKERS)
            submit = handle.submit
            event = IngressEvent
            times = _timed(n, lambda i: submit(event(INGRESS, _SOURCE, i)).result(WAIT_S))
            if saturate and host.status().tools["slow"].in_flight != 2 * TOOL_WORKERS:
                raise BenchmarkError("the tool pool was not saturated throughout")
        finally:
            gate.release()
            wait_all(held, "slow tools")
    return latency(times)


# --------------------------------------------- tool call vs services
def _tool_calls(n: int, saturate: bool) -> Sample:
    gate = _Gate()
    held: List[Any] = []
    with PluginHost(tool_workers=TOOL_WORKERS) as host:
        try:
            host.add_tool("noop", noop_tool)
            handles = start_services(host, ("bench-busy-%03d" % k for k in range(SERVICES)),
                                     functools.partial(_Service, gate),
                                     ServiceConfig(queue_size=SERVICE_QUEUE))
            if saturate:
                for handle in handles:
                    held.append(handle.submit(IngressEvent(INGRESS, _SOURCE, _SLOW)))
                gate.wait_entered(SERVICES)
                for handle in handles:  # and fill every queue behind its held handler
                    held.extend(handle.submit(IngressEvent(INGRESS, _SOURCE, _SLOW))
                                for _ in range(SERVICE_QUEUE))
            call = host.call_tool
            times = _timed(n, lambda i: call("noop", i))
            if saturate and any(h.status().queue_depth != SERVICE_QUEUE for h in handles):
                raise BenchmarkError("the services were not saturated throughout")
        finally:
            gate.release()
            wait_all(held, "held events")
    return latency(times)


def build(options: Options) -> Scenario:
    """The isolation scenario for ``options`` (operation count, quick)."""
    n = options.events or (QUICK_OPS if options.quick else DEFAULT_OPS)
    twice = Target("<=", 2.0)
    return Scenario(
        name="isolation",
        title="%s sequential round trips / tool calls, idle vs the other side saturated"
              % format(n, ","),
        metrics=(P50_US, P99_US),
        variants=(
            Variant("svc_idle", "round trip, tools idle",
                    functools.partial(_round_trips, n, False), ours=True),
            Variant("svc_busy", "round trip, tool pool saturated",
                    functools.partial(_round_trips, n, True), ours=True),
            Variant("tool_idle", "call_tool, services idle",
                    functools.partial(_tool_calls, n, False), baseline="tool_idle",
                    ours=True),
            Variant("tool_busy", "call_tool, 100 services saturated",
                    functools.partial(_tool_calls, n, True), baseline="tool_idle",
                    ours=True),
        ),
        baseline="svc_idle",
        ratios=(Ratio("round trip: saturated / idle", "svc_busy", "svc_idle", P99_US.key,
                      twice),
                Ratio("call_tool: saturated / idle", "tool_busy", "tool_idle", P99_US.key,
                      twice)),
        params={"operations": n, "tool_workers": TOOL_WORKERS, "services": SERVICES,
                "service_queue": SERVICE_QUEUE, "slow_tool_calls": 2 * TOOL_WORKERS},
        notes=("saturated tools: %d slow calls (%d running, %d queued); saturated "
               "services: %d handlers held, each with a full queue of %d"
               % (2 * TOOL_WORKERS, TOOL_WORKERS, TOOL_WORKERS, SERVICES, SERVICE_QUEUE),),
        pinned=True,
        pin_reason=LATENCY_PIN_REASON,
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(build, "benchmarks.isolation", argv)


if __name__ == "__main__":
    sys.exit(run())
