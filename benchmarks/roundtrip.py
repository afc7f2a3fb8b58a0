"""Scenario 2, round-trip latency: submit one event and wait for its result, in sequence.

Ours: one service with a no-op handler and the default ``ServiceConfig()`` (timeouts
on); each operation builds an ``IngressEvent``, submits it and waits on the
future's ``result()``. N operations one after another from one thread, each timed
on its own; a repetition reports p50 and p99. Every baseline does the same work,
one ``IngressEvent`` built per operation:

* **queue + Future**: the event and a ``concurrent.futures.Future`` put on a
  ``queue.Queue``; one consumer thread calls a no-op and ``set_result``; the caller
  waits on ``Future.result()``. The least a submit-and-wait round trip can cost.
* **executor**: ``ThreadPoolExecutor(max_workers=1).submit(noop, event).result()``.
* **pykka ask**: ``ref.ask(event)`` (blocking) to a ``ThreadingActor`` whose
  ``on_receive`` does nothing (only when pykka is importable).

Run alone with ``python -m benchmarks.roundtrip [--quick]``.
"""
from __future__ import annotations

import functools
import queue
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from time import perf_counter
from typing import List, Optional, Sequence

from plugin_service import IngressEvent, PluginHost, ServiceConfig

from ._common import LATENCY_PIN_REASON, WAIT_S, check_count, run_alone, start_thread
from ._harness import P50_US, P99_US, Options, Ratio, Sample, Scenario, Target, Variant, latency
from ._workloads import (
    INGRESS,
    PYKKA_MISSING,
    NoOpService,
    SinkActor,
    noop,
    pykka,
    serve_futures,
    start_services,
)

__all__ = ["build", "DEFAULT_OPS", "QUICK_OPS"]

DEFAULT_OPS = 20_000
QUICK_OPS = 3_000

_SOURCE = "benchmarks.roundtrip"


def _ours(n: int) -> Sample:
    with PluginHost() as host:
        [handle] = start_services(host, ["bench-roundtrip"], NoOpService, ServiceConfig())
        submit = handle.submit
        event = IngressEvent
        clock = perf_counter
        times: List[float] = []
        record = times.append
        for i in range(n):
            began = clock()
            submit(event(INGRESS, _SOURCE, i)).result(WAIT_S)
            record(clock() - began)
        check_count("ours", handle.status().counters.succeeded, n, "round trips succeeded")
    return latency(times)


def _queue_future(n: int) -> Sample:
    inbox: queue.Queue = queue.Queue()
    consumer = start_thread(functools.partial(serve_futures, inbox))
    try:
        put = inbox.put
        event = IngressEvent
        new_future = Future
        clock = perf_counter
        times: List[float] = []
        record = times.append
        for i in range(n):
            began = clock()
            future: Future = new_future()
            put((future, event(INGRESS, _SOURCE, i)))
            future.result(WAIT_S)
            record(clock() - began)
    finally:
        inbox.put(None)
        consumer.join(WAIT_S)
    return latency(times)


def _executor(n: int) -> Sample:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-executor") as pool:
        pool.submit(noop).result(WAIT_S)  # its thread exists before the clock starts
        submit = pool.submit
        event = IngressEvent
        clock = perf_counter
        times: List[float] = []
        record = times.append
        for i in range(n):
            began = clock()
            submit(noop, event(INGRESS, _SOURCE, i)).result(WAIT_S)
            record(clock() - began)
    return latency(times)


def _pykka_ask(n: int) -> Sample:
    ref = SinkActor.start()
    try:
        ask = ref.ask
        event = IngressEvent
        clock = perf_counter
        times: List[float] = []
        record = times.append
        for i in range(n):
            began = clock()
            ask(event(INGRESS, _SOURCE, i), timeout=WAIT_S)
            record(clock() - began)
    finally:
        ref.stop()
    return latency(times)


def build(options: Options) -> Scenario:
    """The round-trip scenario for ``options`` (operation count, quick)."""
    n = options.events or (QUICK_OPS if options.quick else DEFAULT_OPS)
    variants: List[Variant] = [
        Variant("ours", "plugin_service", functools.partial(_ours, n), ours=True),
        Variant("queue_future", "queue + Future", functools.partial(_queue_future, n)),
        Variant("executor", "ThreadPoolExecutor", functools.partial(_executor, n)),
    ]
    ratios = [
        Ratio("ours / queue+Future", "ours", "queue_future", P50_US.key, Target("<=", 1.3)),
        Ratio("ours / queue+Future", "ours", "queue_future", P99_US.key, Target("<=", 2.0)),
        Ratio("ours / executor", "ours", "executor", P50_US.key),
    ]
    notes: List[str] = []
    if pykka is not None:
        variants.append(Variant("pykka_ask", "pykka ask", functools.partial(_pykka_ask, n)))
        ratios.append(Ratio("ours / pykka ask", "ours", "pykka_ask", P50_US.key))
    else:
        notes.append(PYKKA_MISSING)
    return Scenario(
        name="roundtrip",
        title="%s sequential submit + result() from one thread, no-op handler"
              % format(n, ","),
        metrics=(P50_US, P99_US),
        variants=tuple(variants),
        baseline="queue_future",
        ratios=tuple(ratios),
        params={"operations": n, "config": "ServiceConfig() (defaults, timeouts on)",
                "pykka": pykka is not None},
        notes=tuple(notes),
        pinned=True,
        pin_reason=LATENCY_PIN_REASON,
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(build, "benchmarks.roundtrip", argv)


if __name__ == "__main__":
    sys.exit(run())
