"""Scenario 7, fan-in: 8 producer threads into 1 service, and into 100 services.

Ours: one host; 1 or 100 services with a no-op handler and
``ServiceConfig(queue_size=1024)`` (default timeouts); 8 producer threads each
submit N/8 events with ``block=True``, building one ``IngressEvent`` per event;
with 100 services a producer sends its i-th event to service ``(i + p) % 100``.
The baseline is the design floor of scenario 1 with the same fan-in: one
``queue.Queue(maxsize=1024)`` per target with one consumer thread each, fed an
event and a ``Future`` per message, calling a no-op and ``set_result``.

The clock starts as the producers are released from a barrier and stops when every
producer's last future for every target is done (queues are FIFO, so every earlier
one is too). Producers keep no other futures; completion is then checked by
counting (our ``succeeded`` counters, the floor's consumer counts), outside the
clock. Threads, hosts and queues are made and torn down outside the clock too.

Run alone with ``python -m benchmarks.fanin [--quick]``.
"""
from __future__ import annotations

import functools
import queue
import sys
import threading
from concurrent.futures import Future
from time import perf_counter
from typing import Any, Callable, List, Optional, Sequence

from plugin_service import IngressEvent, PluginHost, ServiceConfig

from ._common import WAIT_S, BenchmarkError, check_count, run_alone, start_thread, wait_all
from ._harness import EVENTS_PER_S, Options, Ratio, Sample, Scenario, Variant, throughput
from ._workloads import INGRESS, NoOpService, serve_floor, start_services

__all__ = ["build", "PRODUCERS", "DEFAULT_EVENTS", "QUICK_EVENTS", "QUEUE_SIZE"]

PRODUCERS = 8
DEFAULT_EVENTS = 100_000
QUICK_EVENTS = 20_000
QUEUE_SIZE = 1024

_SOURCE = "benchmarks.fanin"

#: A producer: (producer number, events to send) -> its last future per target.
Producer = Callable[[int, int], List[Any]]


def _drive(producer: Producer, per_producer: int) -> float:
    """Run PRODUCERS threads of ``producer`` released together; seconds until every
    last future is done."""
    gate = threading.Barrier(PRODUCERS + 1, timeout=WAIT_S)
    lasts: List[List[Any]] = [[] for _ in range(PRODUCERS)]
    failures: List[BaseException] = []

    def produce(p: int) -> None:
        try:
            gate.wait()
            lasts[p] = producer(p, per_producer)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=produce, args=(p,), name="bench-producer-%d" % p,
                                daemon=True) for p in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    started = perf_counter()
    gate.wait()
    for thread in threads:
        thread.join(WAIT_S)
    wait_all([f for futures in lasts for f in futures if f is not None], "fan-in")
    elapsed = perf_counter() - started
    if failures or any(t.is_alive() for t in threads):
        raise BenchmarkError("fan-in producers failed: %r" % failures[:1])
    return elapsed


def _ours(targets: int, n: int) -> Sample:
    per_producer = n // PRODUCERS
    with PluginHost() as host:
        handles = start_services(host, ("bench-fanin-%03d" % k for k in range(targets)),
                                 NoOpService, ServiceConfig(queue_size=QUEUE_SIZE))
        submits = [h.submit for h in handles]

        def producer(p: int, count: int) -> List[Any]:
            lasts: List[Any] = [None] * targets
            event = IngressEvent
            for i in range(count):
                k = (i + p) % targets
                lasts[k] = submits[k](event(INGRESS, _SOURCE, i), block=True)
            return lasts

        elapsed = _drive(producer, per_producer)
        check_count("ours", sum(h.status().counters.succeeded for h in handles),
                    per_producer * PRODUCERS, "events succeeded")
    return throughput(per_producer * PRODUCERS, elapsed)


def _floor(targets: int, n: int) -> Sample:
    per_producer = n // PRODUCERS
    inboxes: List[queue.Queue] = [queue.Queue(maxsize=QUEUE_SIZE) for _ in range(targets)]
    handled = [0] * targets
    consumers = [start_thread(functools.partial(serve_floor, inboxes[k], handled, k),
                              "bench-consumer-%03d" % k)
                 for k in range(targets)]
    try:
        puts = [inbox.put for inbox in inboxes]

        def producer(p: int, count: int) -> List[Any]:
            lasts: List[Any] = [None] * targets
            event = IngressEvent
            new_future = Future
            for i in range(count):
                k = (i + p) % targets
                future = lasts[k] = new_future()
                puts[k]((future, event(INGRESS, _SOURCE, i)))
            return lasts

        elapsed = _drive(producer, per_producer)
        check_count("floor", sum(handled), per_producer * PRODUCERS)
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for consumer in consumers:
            consumer.join(WAIT_S)
    return throughput(per_producer * PRODUCERS, elapsed)


def build(options: Options) -> Scenario:
    """The fan-in scenario for ``options`` (event count, quick)."""
    n = options.events or (QUICK_EVENTS if options.quick else DEFAULT_EVENTS)
    n = max(PRODUCERS, n - n % PRODUCERS)
    return Scenario(
        name="fanin",
        title="%s events from %d producer threads, block=True, queue_size=%d, no-op handler"
              % (format(n, ","), PRODUCERS, QUEUE_SIZE),
        metrics=(EVENTS_PER_S,),
        variants=(
            Variant("ours_1", "8 -> 1 service", functools.partial(_ours, 1, n), ours=True),
            Variant("floor_1", "8 -> 1 queue (floor)", functools.partial(_floor, 1, n)),
            Variant("ours_100", "8 -> 100 services", functools.partial(_ours, 100, n),
                    baseline="floor_100", ours=True),
            Variant("floor_100", "8 -> 100 queues (floor)", functools.partial(_floor, 100, n),
                    baseline="floor_100"),
        ),
        baseline="floor_1",
        ratios=(Ratio("1 service / floor", "ours_1", "floor_1"),
                Ratio("100 services / floor", "ours_100", "floor_100")),
        params={"events": n, "producers": PRODUCERS, "targets": [1, 100],
                "queue_size": QUEUE_SIZE, "block": True,
                "config": "ServiceConfig(queue_size=%d), default timeouts" % QUEUE_SIZE},
        notes=("the issue sets no target for fan-in; the floor is scenario 1's, fanned in",),
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(build, "benchmarks.fanin", argv)


if __name__ == "__main__":
    sys.exit(run())
