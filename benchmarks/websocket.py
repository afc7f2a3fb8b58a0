"""Scenarios 9 and 10, a WebSocket source: frames per second through a
``WebSocketSource`` into a no-op service, and the time from a frame sent to its
handler's start.

The server is ``_wspeer`` in a process of its own on 127.0.0.1 (one per
repetition, started and stopped outside the clock): asked ``"go COUNT PACE"``, it
sends COUNT 64-byte text messages, each stamped with its ``time.monotonic()``.

* **source** (ours): one host, a service with the default ``ServiceConfig()`` and
  a handler that only counts, and ``host.add_source(..., WebSocketSource(url))``
  with the default ``overflow="block"``. The clock starts as ``SourceHandle.send``
  asks for the frames and stops when the handler has counted the last one.
* **bare client** (the baseline): the same library's synchronous client, with the
  same defaults, reading the same server in a loop (``recv()`` COUNT times) on
  one thread: what reading the socket costs with no host at all.

Throughput: COUNT frames sent as fast as the connection takes them. Latency:
frames paced ``PACE_US`` apart (so none waits behind another), each timed from
its stamp to the handler's start (the bare client: to ``recv()`` returning).
The issue's target: source / bare client >= 0.7x frames per second.

Run alone with ``python -m benchmarks.websocket [--quick]``.
"""
from __future__ import annotations

import functools
import sys
import threading
import time
from time import perf_counter
from typing import Any, Callable, List, Optional, Sequence

from plugin_service import (
    Ingress,
    IngressEvent,
    PluginHost,
    ServicePlugin,
    SourceState,
    WebSocketSource,
)

from ._common import WAIT_S, BenchmarkError, check_count
from ._harness import (
    EVENTS_PER_S,
    P50_US,
    P99_US,
    Options,
    Ratio,
    Sample,
    Scenario,
    Target,
    Variant,
    latency,
    throughput,
)
from ._wspeer import FRAME_BYTES, Peer

__all__ = ["build", "build_latency", "DEFAULT_FRAMES", "QUICK_FRAMES", "PACE_US"]

DEFAULT_FRAMES = 50_000
QUICK_FRAMES = 10_000
LATENCY_FRAMES = 1_000
QUICK_LATENCY_FRAMES = 300
PACE_US = 500
INGRESS = "frames"


class _Counting(ServicePlugin):
    """Counts its events; sets ``done`` at the last."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self, count: int) -> None:
        self.left = count
        self.done = threading.Event()
        self.delays: List[float] = []

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> None:
        self.left -= 1
        if not self.left:
            self.done.set()


class _Timing(_Counting):
    """Also times each event from its frame's stamp to the handler's start."""

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> None:
        self.delays.append(time.monotonic() - float(event.payload))
        _Counting.handle_ingress(self, event, ctx)


def _ours(count: int, pace_us: int, timed: bool) -> Any:
    """One repetition through a WebSocketSource: seconds, or the delays when timed."""
    with Peer() as peer, PluginHost() as host:
        plugin = (_Timing if timed else _Counting)(count)
        host.add_service("bench-ws", plugin).start()
        handle = host.add_source("bench-ws", WebSocketSource(peer.url), service="bench-ws",
                                 ingress=INGRESS)
        _wait_open(handle)
        started = perf_counter()
        handle.send("go %d %d %d" % (count, pace_us, FRAME_BYTES))
        if not plugin.done.wait(WAIT_S):
            raise BenchmarkError("source: %d of %d frames handled" % (count - plugin.left, count))
        elapsed = perf_counter() - started
        check_count("source", handle.status().received, count, "frames received")
    return plugin.delays if timed else elapsed


def _wait_open(handle: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while handle.status().state is not SourceState.OPEN:
        if time.monotonic() > deadline:
            raise BenchmarkError("the source did not connect: %s" % (handle.status(),))
        time.sleep(0.001)


def _bare(count: int, pace_us: int, timed: bool) -> Any:
    """One repetition of the bare client reading in a loop."""
    from websockets.sync.client import connect

    delays: List[float] = []
    with Peer() as peer, connect(peer.url) as client:
        recv, clock = client.recv, time.monotonic
        started = perf_counter()
        client.send("go %d %d %d" % (count, pace_us, FRAME_BYTES))
        if timed:
            for _ in range(count):
                message = recv(WAIT_S)
                delays.append(clock() - float(message))
        else:
            for _ in range(count):
                recv(WAIT_S)
        elapsed = perf_counter() - started
    return delays if timed else elapsed


def _rate(run: Callable[[int, int, bool], Any], count: int) -> Sample:
    return throughput(count, run(count, 0, False))


def _delays(run: Callable[[int, int, bool], Any], count: int) -> Sample:
    return latency(run(count, PACE_US, True))


def build(options: Options) -> Scenario:
    """Frames per second through a source vs the bare client, for ``options``."""
    n = options.events or (QUICK_FRAMES if options.quick else DEFAULT_FRAMES)
    return Scenario(
        name="websocket",
        title="%s %d-byte text frames from a server process on 127.0.0.1, as fast as "
              "they go, into a counting handler" % (format(n, ","), FRAME_BYTES),
        metrics=(EVENTS_PER_S,),
        variants=(
            Variant("ours", "WebSocketSource -> service", functools.partial(_rate, _ours, n),
                    ours=True),
            Variant("bare", "bare client recv() loop", functools.partial(_rate, _bare, n)),
        ),
        baseline="bare",
        ratios=(Ratio("source / bare client", "ours", "bare", EVENTS_PER_S.key,
                      Target(">=", 0.7)),),
        params={"frames": n, "frame_bytes": FRAME_BYTES, "overflow": "block",
                "config": "ServiceConfig() (queue_size=32)", "server": "separate process"},
        notes=("the server is a websockets process of its own; both clients use the "
               "library's defaults (max_queue=16)",),
    )


def build_latency(options: Options) -> Scenario:
    """Frame sent -> handler start, paced, vs the bare client's recv()."""
    n = options.events or (QUICK_LATENCY_FRAMES if options.quick else LATENCY_FRAMES)
    return Scenario(
        name="websocket_latency",
        title="%s frames paced %d µs apart: server's send stamp -> handler start"
              % (format(n, ","), PACE_US),
        metrics=(P50_US, P99_US),
        variants=(
            Variant("ours", "WebSocketSource -> handler", functools.partial(_delays, _ours, n),
                    ours=True),
            Variant("bare", "bare client recv()", functools.partial(_delays, _bare, n)),
        ),
        baseline="bare",
        params={"frames": n, "pace_us": PACE_US, "frame_bytes": FRAME_BYTES},
        notes=("both ends stamp with time.monotonic(), one clock for every process "
               "on the machine",),
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    from ._cli import main

    return main([build, build_latency], argv, prog="python -m benchmarks.websocket")


if __name__ == "__main__":
    sys.exit(run())
