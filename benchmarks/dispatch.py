"""Scenario 1, dispatch throughput: one producer thread pushing events into one service.

Ours: one service with a no-op handler, ``ServiceConfig(queue_size=1024)`` with its
default timeouts, N events submitted from one thread with ``block=True``, each
``IngressEvent`` built in the loop, then waited to completion. Every baseline is
handed the same work from the same thread, one ``IngressEvent`` built per message:

* **design floor**: the event and a ``concurrent.futures.Future`` put on a
  ``queue.Queue(maxsize=1024)``; one consumer thread calls a no-op and
  ``set_result``. The least this API can cost, with no validation, counters or
  timeouts.
* **raw queue**: ints through a ``queue.Queue(maxsize=1024)`` to one consumer
  thread; no event, no future. The handoff's own cost.
* **pykka tell** and **pykka ask(block=False)** to a ``ThreadingActor`` whose
  ``on_receive`` only counts (only when pykka is importable).

Like a real producer, no variant keeps its futures: the timed loop holds only the
last future (or pykka future) and waits on it; the queues are FIFO, so every
earlier one is done by then. Completion is checked by counting, outside the clock:
our service's ``status().counters.succeeded`` must be N, and every baseline's
consumer counts what it handled. (Keeping all 100k futures alive made the cyclic
GC, which stays on, the largest cost of every variant.)

Only the submit loop and the wait are timed; starting and stopping threads, hosts
and actors, and the completion checks, are not.

Run alone with ``python -m benchmarks.dispatch [--quick] [--json FILE]``.
"""
from __future__ import annotations

import functools
import queue
import sys
from concurrent.futures import Future
from time import perf_counter
from typing import Any, List, Optional, Sequence

from plugin_service import IngressEvent, PluginHost, ServiceConfig

from ._common import WAIT_S, BenchmarkError, check_count, run_alone, start_thread
from ._harness import EVENTS_PER_S, Options, Ratio, Sample, Scenario, Target, Variant, throughput
from ._workloads import (
    COUNT,
    INGRESS,
    PYKKA_MISSING,
    CountingActor,
    NoOpService,
    pykka,
    serve_floor,
    start_services,
)

__all__ = ["build", "DEFAULT_EVENTS", "QUICK_EVENTS", "QUEUE_SIZE"]

DEFAULT_EVENTS = 100_000
QUICK_EVENTS = 20_000
QUEUE_SIZE = 1024
BATCH = 100  # events per post_many call

_SOURCE = "benchmarks.dispatch"


# ------------------------------------------------------------------- ours
def _ours(n: int) -> Sample:
    with PluginHost() as host:
        [handle] = start_services(host, ["bench-dispatch"], NoOpService,
                                  ServiceConfig(queue_size=QUEUE_SIZE))
        submit = handle.submit
        event = IngressEvent
        last: Any = None
        started = perf_counter()
        for i in range(n):
            last = submit(event(INGRESS, _SOURCE, i), block=True)
        last.result(timeout=WAIT_S)
        elapsed = perf_counter() - started
        check_count("ours", handle.status().counters.succeeded, n)
    return throughput(n, elapsed)


def _ours_post(n: int) -> Sample:
    """``post`` (fire and forget) for all but the last event, which is submitted
    and waited on: the queue is FIFO, so every posted one is done by then."""
    with PluginHost() as host:
        [handle] = start_services(host, ["bench-post"], NoOpService,
                                  ServiceConfig(queue_size=QUEUE_SIZE))
        post = handle.post
        event = IngressEvent
        started = perf_counter()
        for i in range(n - 1):
            post(event(INGRESS, _SOURCE, i), block=True)
        handle.submit(event(INGRESS, _SOURCE, n - 1), block=True).result(timeout=WAIT_S)
        elapsed = perf_counter() - started
        check_count("ours post", handle.status().counters.succeeded, n)
    return throughput(n, elapsed)


def _ours_post_many(n: int, batch: int = BATCH) -> Sample:
    """``post_many`` of ``batch`` events at a time (each built in the loop), then
    one submitted event waited on, as for ``post``."""
    with PluginHost() as host:
        [handle] = start_services(host, ["bench-post-many"], NoOpService,
                                  ServiceConfig(queue_size=QUEUE_SIZE))
        post_many = handle.post_many
        event = IngressEvent
        full, rest = divmod(n - 1, batch)
        started = perf_counter()
        for b in range(full):
            base = b * batch
            post_many([event(INGRESS, _SOURCE, base + i) for i in range(batch)], block=True)
        post_many([event(INGRESS, _SOURCE, full * batch + i) for i in range(rest)], block=True)
        handle.submit(event(INGRESS, _SOURCE, n - 1), block=True).result(timeout=WAIT_S)
        elapsed = perf_counter() - started
        check_count("ours post_many", handle.status().counters.succeeded, n)
    return throughput(n, elapsed)


# -------------------------------------------------------------- baselines
def _floor(n: int) -> Sample:
    inbox: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
    handled = [0]
    consumer = start_thread(functools.partial(serve_floor, inbox, handled, 0))
    try:
        put = inbox.put
        event = IngressEvent
        new_future = Future
        future: Any = None
        started = perf_counter()
        for i in range(n):
            future = new_future()
            put((future, event(INGRESS, _SOURCE, i)))
        future.result(timeout=WAIT_S)
        elapsed = perf_counter() - started
        check_count("floor", handled[0], n)
    finally:
        inbox.put(None)
        consumer.join(WAIT_S)
    return throughput(n, elapsed)


def _raw_queue(n: int) -> Sample:
    inbox: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
    handled = [0]

    def consume() -> None:
        get = inbox.get
        count = 0
        while get() is not None:
            count += 1
        handled[0] = count

    consumer = start_thread(consume)
    put = inbox.put
    started = perf_counter()
    for i in range(n):
        put(i)
    put(None)
    consumer.join(WAIT_S)
    elapsed = perf_counter() - started
    if consumer.is_alive():
        raise BenchmarkError("raw queue: consumer still running after %.0f s" % WAIT_S)
    check_count("raw queue", handled[0], n)
    return throughput(n, elapsed)


def _pykka_tell(n: int) -> Sample:
    ref = CountingActor.start()
    try:
        tell = ref.tell
        event = IngressEvent
        started = perf_counter()
        for i in range(n):
            tell(event(INGRESS, _SOURCE, i))
        # The inbox is FIFO: once this answers, every told message has been handled.
        handled = ref.ask(COUNT, timeout=WAIT_S)
        elapsed = perf_counter() - started
        check_count("pykka tell", handled, n)
    finally:
        ref.stop()
    return throughput(n, elapsed)


def _pykka_ask(n: int) -> Sample:
    ref = CountingActor.start()
    try:
        ask = ref.ask
        event = IngressEvent
        last: Any = None
        started = perf_counter()
        for i in range(n):
            last = ask(event(INGRESS, _SOURCE, i), block=False)
        last.get(timeout=WAIT_S)
        elapsed = perf_counter() - started
        check_count("pykka ask", ref.ask(COUNT, timeout=WAIT_S), n)
    finally:
        ref.stop()
    return throughput(n, elapsed)


# ---------------------------------------------------------------- scenario
def build(options: Options) -> Scenario:
    """The dispatch-throughput scenario for ``options`` (event count, quick)."""
    n = options.events or (QUICK_EVENTS if options.quick else DEFAULT_EVENTS)
    variants: List[Variant] = [
        Variant("ours", "plugin_service", functools.partial(_ours, n), ours=True),
        Variant("post", "plugin_service post", functools.partial(_ours_post, n), ours=True),
        Variant("post_many", "plugin_service post_many(%d)" % BATCH,
                functools.partial(_ours_post_many, n), ours=True),
        Variant("floor", "design floor", functools.partial(_floor, n)),
        Variant("raw_queue", "raw queue (ints)", functools.partial(_raw_queue, n)),
    ]
    ratios = [Ratio("ours / floor", "ours", "floor", target=Target(">=", 0.75)),
              Ratio("ours / raw queue", "ours", "raw_queue", target=Target(">=", 0.10)),
              Ratio("post_many / raw queue", "post_many", "raw_queue",
                    target=Target(">=", 0.50))]
    notes = ["every variant keeps only its last future and counts completions outside "
             "the clock (GC on: retaining every future made the cyclic GC dominate)"]
    if pykka is not None:
        notes.append("ours and the floor block on a full queue of %d; pykka's inbox is "
                     "unbounded, so tell and ask never wait for room" % QUEUE_SIZE)
        variants += [
            Variant("pykka_tell", "pykka tell", functools.partial(_pykka_tell, n)),
            Variant("pykka_ask", "pykka ask(block=False)", functools.partial(_pykka_ask, n)),
        ]
        ratios += [Ratio("ours / pykka ask", "ours", "pykka_ask", target=Target(">=", 1.25)),
                   Ratio("post / pykka tell", "post", "pykka_tell", target=Target(">=", 1.10))]
    else:
        notes.append(PYKKA_MISSING)
    return Scenario(
        name="dispatch",
        title="%s events from one thread, block=True, queue_size=%d, no-op handler"
              % (format(n, ","), QUEUE_SIZE),
        metrics=(EVENTS_PER_S,),
        variants=tuple(variants),
        baseline="floor",
        ratios=tuple(ratios),
        params={"events": n, "queue_size": QUEUE_SIZE, "producers": 1, "block": True,
                "config": "ServiceConfig(queue_size=%d), default timeouts" % QUEUE_SIZE,
                "retained_futures": "last only", "pykka": pykka is not None},
        notes=tuple(notes),
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(build, "benchmarks.dispatch", argv)


if __name__ == "__main__":
    sys.exit(run())
