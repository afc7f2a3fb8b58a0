"""Tracing's cost (``PluginHost(tracing=...)``): the round trip of scenario 2 with
tracing off and on.

Every variant is ``roundtrip``'s "ours" (one service, no-op handler, default
``ServiceConfig()``; each operation builds an ``IngressEvent``, submits it and
waits on ``result()``), on a host:

* **off**: ``PluginHost()``, tracing off (the default): the same code as a host
  that never heard of tracing, so ``off / queue+Future`` should match
  ``roundtrip``'s ``ours / queue+Future``.
* **on, no-op API**: ``tracing=NoOpTracerProvider()``: the library's own cost of
  tracing (traced futures, context capture and attach), with spans that record
  nothing.
* **on, SDK**: ``tracing=TracerProvider()`` of the SDK with a
  ``SimpleSpanProcessor`` into an ``InMemorySpanExporter`` (cleared after each
  repetition): what a real span per event costs, short of the network.
* **queue + Future**: ``roundtrip``'s floor, for the ratios.

Needs the ``otel`` extra. Run alone with ``python -m benchmarks.tracing [--quick]``.
"""
from __future__ import annotations

import functools
import sys
from time import perf_counter
from typing import Any, Callable, List, Optional, Sequence

from plugin_service import IngressEvent, PluginHost, ServiceConfig

from ._common import LATENCY_PIN_REASON, WAIT_S, check_count, run_alone
from ._harness import P50_US, P99_US, Options, Ratio, Sample, Scenario, Variant, latency
from ._workloads import INGRESS, NoOpService, start_services
from .roundtrip import DEFAULT_OPS, QUICK_OPS, _queue_future

__all__ = ["build"]

_SOURCE = "benchmarks.tracing"


def _noop_provider() -> Any:
    from opentelemetry import trace
    # NoOpTracerProvider in later releases; the otel extra's minimum (1.0.0)
    # has it as _DefaultTracerProvider.
    made = getattr(trace, "NoOpTracerProvider", None) or trace._DefaultTracerProvider
    return made()


def _sdk_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return provider


def _round_trips(n: int, tracing: Optional[Callable[[], Any]]) -> Sample:
    provider = None if tracing is None else tracing()
    with PluginHost(tracing=False if provider is None else provider) as host:
        [handle] = start_services(host, ["bench-tracing"], NoOpService, ServiceConfig())
        submit = handle.submit
        event = IngressEvent
        clock = perf_counter
        times: List[float] = []
        record = times.append
        for i in range(n):
            began = clock()
            submit(event(INGRESS, _SOURCE, i)).result(WAIT_S)
            record(clock() - began)
        check_count("tracing", handle.status().counters.succeeded, n, "round trips succeeded")
    if provider is not None and hasattr(provider, "shutdown"):
        provider.shutdown()  # its exporter and every span go with it
    return latency(times)


def build(options: Options) -> Scenario:
    """The tracing-cost scenario for ``options`` (operation count, quick)."""
    n = options.events or (QUICK_OPS if options.quick else DEFAULT_OPS)
    variants = (
        Variant("off", "tracing off", functools.partial(_round_trips, n, None), ours=True),
        Variant("noop", "on, no-op API", functools.partial(_round_trips, n, _noop_provider),
                ours=True),
        Variant("sdk", "on, SDK in-memory",
                functools.partial(_round_trips, n, _sdk_provider), ours=True),
        Variant("queue_future", "queue + Future", functools.partial(_queue_future, n)),
    )
    return Scenario(
        name="tracing",
        title="%s sequential submit + result(), no-op handler, tracing off and on"
              % format(n, ","),
        metrics=(P50_US, P99_US),
        variants=variants,
        baseline="queue_future",
        ratios=(
            Ratio("off / queue+Future", "off", "queue_future", P50_US.key),
            Ratio("no-op API / off", "noop", "off", P50_US.key),
            Ratio("SDK / off", "sdk", "off", P50_US.key),
            Ratio("SDK / off", "sdk", "off", P99_US.key),
        ),
        params={"operations": n, "config": "ServiceConfig() (defaults, timeouts on)",
                "exporter": "SimpleSpanProcessor(InMemorySpanExporter())"},
        pinned=True,
        pin_reason=LATENCY_PIN_REASON,
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(build, "benchmarks.tracing", argv)


if __name__ == "__main__":
    sys.exit(run())
