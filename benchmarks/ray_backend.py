"""The Ray backend: dispatch throughput and round trip, beside bare Ray actor calls.

Five variants run interleaved, each repetition in two timed phases on a no-op
handler, every operation building its own ``IngressEvent``:

* **throughput**: N events. Ours: ``submit(event, block=True)`` into a service with
  ``ServiceConfig(queue_size=1024)`` (default timeouts), then wait for the last
  future (the queue is FIFO and dispatch serial, so every earlier one is done);
  the worker hands the actor whatever is queued, up to 256 events a Ray call
  (``RayBackend()``'s default pipeline, batched). Bare Ray: N
  ``actor.f.remote(event)`` calls, then ``ray.get`` of all of them; bare Ray one
  at a time: ``ray.get(actor.f.remote(event))`` N times, the most a dispatch that
  waits for each answer before sending the next could reach; bare Ray by hand in
  lists: the N events in lists of 256, one ``actor.many.remote(list)`` call each,
  pipelined, then ``ray.get`` of all: the ceiling of any batching.
* **round trip**: M operations one after another, each timed: ours
  ``submit(event).result()``, bare Ray ``ray.get(actor.f.remote(event))``; the
  phase reports round trips per second and p50/p99.

Variants: **plugin_service on Ray** (``PluginHost(backend=RayBackend())``, one
actor per service), **bare Ray actor** (a plain actor whose ``f`` returns None,
``num_cpus=0`` like ours; pipelined, one call at a time, and in lists) and
**plugin_service on threads** (``PluginHost()``).
Creating hosts and actors, a few untimed warm-up calls and the completion checks
stay outside the clock. The issue's targets: ours-on-Ray at least 5x bare Ray's
pipelined throughput, and a round trip at least 0.9x bare Ray's. ``ray_scaling``
adds a 1 ms handler and the throughput of 1 up to the machine's cores services.

One local Ray instance (127.0.0.1, 2 CPUs, no dashboard) is started on the first
Ray repetition and serves the whole run. ``python -m benchmarks`` runs it last
when the ``ray`` extra is installed; alone:
``python -m benchmarks.ray_backend [--quick] [--json FILE]`` (these scenarios
and ``ray_scaling``'s).
"""
from __future__ import annotations

import functools
import logging
import os
import sys
from time import perf_counter
from typing import Any, Callable, Dict, List, Optional, Sequence

from plugin_service import IngressEvent, PluginHost, RayBackend, ServiceConfig

from ._harness import (
    EVENTS_PER_S,
    P50_US,
    P99_US,
    Metric,
    Options,
    Ratio,
    Sample,
    Scenario,
    Target,
    Variant,
    latency,
    main,
)
from ._workloads import INGRESS, NoOpService, start_services

__all__ = ["build", "run", "DEFAULT_EVENTS", "QUICK_EVENTS", "QUEUE_SIZE", "LIST_SIZE",
           "builders"]

DEFAULT_EVENTS = 2_000  # throughput phase; the round-trip phase runs a quarter as many
QUICK_EVENTS = 500
QUEUE_SIZE = 1024
WARMUP_CALLS = 20
LIST_SIZE = 256  # events per call of bare Ray in lists (our batch bound, too)
WAIT_S = 120.0

_SOURCE = "benchmarks.ray_backend"
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ROUNDTRIPS_PER_S = Metric("roundtrips_per_s", "round trips/s", higher_is_better=True,
                          unit="round trips/s")


class BenchmarkError(RuntimeError):
    """A variant did not do the work it was timed for."""


class NoOpActor:
    """The bare baseline: a Ray actor whose method does nothing."""

    def f(self, event: Any) -> None:
        return None

    def many(self, events: List[Any]) -> List[None]:
        return [None for _event in events]


# ------------------------------------------------------------------- Ray
_ray_module: Any = None


def _ray() -> Any:
    """The ``ray`` module, with one local loopback instance started on first use."""
    global _ray_module
    if _ray_module is None:
        # Read at import: a local instance then listens on 127.0.0.1 only.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR,
                     runtime_env={"env_vars": {"PYTHONPATH": _REPO}})
        _ray_module = ray
    return _ray_module


# ---------------------------------------------------------------- phases
def _submit_all(submit: Callable[..., Any], n: int) -> float:
    """Submit n events (block=True) and wait for the last; the seconds it took."""
    event = IngressEvent
    future: Any = None
    started = perf_counter()
    for i in range(n):
        future = submit(event(INGRESS, _SOURCE, i), block=True)
    future.result(timeout=WAIT_S)
    return perf_counter() - started


def _round_trips(call: Callable[[IngressEvent], Any], m: int) -> Dict[str, float]:
    """m sequential round trips, each timed: rate, p50 and p99."""
    event = IngressEvent
    clock = perf_counter
    times: List[float] = []
    record = times.append
    started = clock()
    for i in range(m):
        began = clock()
        call(event(INGRESS, _SOURCE, i))
        record(clock() - began)
    total = clock() - started
    sample = dict(latency(times))
    sample[ROUNDTRIPS_PER_S.key] = m / total
    return sample


def _ours(backend: Optional[Callable[[], Any]], n: int, m: int) -> Sample:
    host = PluginHost(backend=None if backend is None else backend())
    try:
        handle, = start_services(host, ["bench-ray"], NoOpService,
                                 ServiceConfig(queue_size=QUEUE_SIZE))
        for i in range(WARMUP_CALLS):
            handle.submit(IngressEvent(INGRESS, _SOURCE, i)).result(timeout=WAIT_S)
        seconds = _submit_all(handle.submit, n)

        def call(event: IngressEvent) -> Any:
            return handle.submit(event).result(timeout=WAIT_S)

        sample = _round_trips(call, m)
        handled = handle.status().counters.succeeded
        if handled != WARMUP_CALLS + n + m:
            raise BenchmarkError("ours: %d of %d events handled"
                                 % (handled, WARMUP_CALLS + n + m))
    finally:
        host.close(timeout=WAIT_S)
    sample[EVENTS_PER_S.key] = n / seconds
    return sample


def _bare_ray(how: str, n: int, m: int) -> Sample:
    """Bare Ray: ``how`` is ``pipelined``, ``serial`` or ``lists``."""
    ray = _ray()
    actor = ray.remote(NoOpActor).options(num_cpus=0).remote()
    try:
        f = actor.f
        get = ray.get
        get([f.remote(i) for i in range(WARMUP_CALLS)], timeout=WAIT_S)
        event = IngressEvent
        started = perf_counter()
        if how == "pipelined":
            get([f.remote(event(INGRESS, _SOURCE, i)) for i in range(n)], timeout=WAIT_S)
        elif how == "lists":
            many = actor.many.remote
            get([many([event(INGRESS, _SOURCE, i) for i in range(start, min(n, start + LIST_SIZE))])
                 for start in range(0, n, LIST_SIZE)], timeout=WAIT_S)
        else:
            for i in range(n):
                get(f.remote(event(INGRESS, _SOURCE, i)))
        seconds = perf_counter() - started

        def call(event: IngressEvent) -> Any:
            return get(f.remote(event))

        sample = _round_trips(call, m)
    finally:
        ray.kill(actor)
    sample[EVENTS_PER_S.key] = n / seconds
    return sample


def _ray_backend() -> RayBackend:
    _ray()  # the run's instance, started on the main thread
    return RayBackend()


# ---------------------------------------------------------------- scenario
def build(options: Options) -> Scenario:
    """The Ray backend scenario for ``options`` (event count, quick)."""
    n = options.events or (QUICK_EVENTS if options.quick else DEFAULT_EVENTS)
    m = max(1, n // 4)
    variants = (
        Variant("ray_ours", "plugin_service on Ray",
                functools.partial(_ours, _ray_backend, n, m), ours=True),
        Variant("ray_bare", "bare Ray actor", functools.partial(_bare_ray, "pipelined", n, m)),
        Variant("ray_bare_serial", "bare Ray actor, one call at a time",
                functools.partial(_bare_ray, "serial", n, m)),
        Variant("ray_bare_lists", "bare Ray actor, lists of %d a call" % LIST_SIZE,
                functools.partial(_bare_ray, "lists", n, m)),
        Variant("thread_ours", "plugin_service on threads",
                functools.partial(_ours, None, n, m), ours=True),
    )
    ratios = (
        Ratio("ours on Ray / bare Ray", "ray_ours", "ray_bare", EVENTS_PER_S.key,
              Target(">=", 5.0)),
        Ratio("ours on Ray / bare Ray in lists (ceiling)", "ray_ours", "ray_bare_lists",
              EVENTS_PER_S.key),
        Ratio("ours on Ray / bare Ray", "ray_ours", "ray_bare", ROUNDTRIPS_PER_S.key,
              Target(">=", 0.9)),
        Ratio("ours on Ray / bare Ray", "ray_ours", "ray_bare", P50_US.key),
        Ratio("ours on Ray / bare Ray one at a time", "ray_ours", "ray_bare_serial",
              EVENTS_PER_S.key),
        Ratio("ours on Ray / ours on threads", "ray_ours", "thread_ours",
              ROUNDTRIPS_PER_S.key),
    )
    return Scenario(
        name="ray_backend",
        title="%s events submitted (block=True) then %s sequential round trips per "
              "repetition, no-op handler" % (format(n, ","), format(m, ",")),
        metrics=(EVENTS_PER_S, ROUNDTRIPS_PER_S, P50_US, P99_US),
        variants=variants,
        baseline="ray_bare",
        ratios=ratios,
        params={"events": n, "round_trips": m, "queue_size": QUEUE_SIZE,
                "list_size": LIST_SIZE,
                "config": "ServiceConfig(queue_size=%d) (default timeouts)" % QUEUE_SIZE,
                "ray": "local, 127.0.0.1, num_cpus=2, no dashboard"},
        notes=(
            "ours on Ray hands up to queue_size events to the actor ahead of their "
            "turn (RayBackend(pipeline=None)), whatever is queued in one Ray call (up to "
            "256), which it runs one at a time in order, each outcome coming back as it "
            "ends; the bare baseline pipelines all N remote() calls, then one ray.get; "
            "bare Ray one call at a time is what a dispatch waiting for each answer "
            "reaches; bare Ray in lists batches by hand, a list per call (the ceiling)",
        ),
    )


def builders() -> List[Callable[[Options], Scenario]]:
    """This module's scenario and ``ray_scaling``'s, in the order they run."""
    from . import ray_scaling

    return [build, ray_scaling.build_handler, ray_scaling.build_services]


def run(argv: Optional[Sequence[str]] = None) -> int:
    return main(builders(), argv, prog="python -m benchmarks.ray_backend")


if __name__ == "__main__":
    sys.exit(run())
