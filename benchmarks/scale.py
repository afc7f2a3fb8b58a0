"""Scenario 6, scale: 1,000 idle services against 1,000 plain threads.

Ours: a ``PluginHost`` with 1,000 services (a plugin that does nothing), registered
with ``add_service`` and started with ``host.start_all()``; then idle; then
``host.close()``. Baseline: 1,000 plain threads, each blocked on its own
``queue.Queue``; started (create the queues and threads, start all), idle, then
stopped (a sentinel into every queue, join all).

Each repetition runs in a fresh interpreter (``python -m benchmarks.scale --child``)
so that its resident memory starts clean and no thread outlives it; the parent
alternates the two. Each child pins itself to one CPU, the same for both: thread
start-up is a hand-off between threads, and across the CPUs of a shared machine
its wake-up delays swung start times tenfold between rounds. A child reports:

* **start s**: create + start all (ours: ``add_service`` x 1,000 + ``start_all``);
* **stop s**: stop all and join every thread (ours: ``host.close()``);
* **RSS KiB/unit**: the resident set (``/proc/self/statm``) after starting minus
  before creating, per service or thread;
* **idle CPU**: process CPU time (``time.process_time()``, every thread) over the
  idle period, in percent of one core. The main thread sleeps meanwhile: that
  sleep is the scenario, not a synchronisation.

Run alone with ``python -m benchmarks.scale [--quick]``.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from ._common import BenchmarkError, run_alone
from ._harness import (
    Limit,
    Metric,
    Options,
    Ratio,
    Sample,
    Scenario,
    Target,
    Variant,
    pin_to_one_cpu,
)

__all__ = ["build", "UNITS", "DEFAULT_IDLE_S", "QUICK_IDLE_S"]

UNITS = 1_000
DEFAULT_IDLE_S = 5.0
QUICK_IDLE_S = 1.0
REPEATS = 3
CHILD_TIMEOUT_S = 300.0

START_S = Metric("start_s", "start s", higher_is_better=False, spec=",.3f", unit="s")
STOP_S = Metric("stop_s", "stop s", higher_is_better=False, spec=",.3f", unit="s")
RSS_KIB = Metric("rss_kib", "RSS KiB/unit", higher_is_better=False, spec=",.1f", unit="KiB")
IDLE_CPU = Metric("idle_cpu_pct", "idle CPU %", higher_is_better=False, spec=",.3f",
                  unit="% of a core")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _idle(seconds: float) -> float:
    """Sleep ``seconds``; the CPU the whole process used meanwhile, in % of a core."""
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    return 100.0 * (time.process_time() - cpu) / (time.perf_counter() - wall)


# ----------------------------------------------------------- in the child
def _child_ours(units: int, idle_s: float) -> Dict[str, float]:
    from plugin_service import LifecycleState, PluginHost, ServicePlugin

    class Idle(ServicePlugin):
        def handle_ingress(self, event: Any, ctx: Any) -> None:
            return None

    gc.collect()
    before = _rss_bytes()
    began = time.perf_counter()
    host = PluginHost()
    for k in range(units):
        host.add_service("idle-%04d" % k, Idle)
    host.start_all()
    start_s = time.perf_counter() - began
    rss = _rss_bytes() - before
    threads = threading.active_count()
    cpu = _idle(idle_s)
    began = time.perf_counter()
    host.close()
    stop_s = time.perf_counter() - began
    if threads < units + 1:
        raise BenchmarkError("only %d threads ran for %d services" % (threads, units))
    states = {h.state for h in host.services()}
    if states != {LifecycleState.STOPPED} or threading.active_count() != 1:
        raise BenchmarkError("after close: states %s, %d threads left"
                             % (sorted(s.value for s in states), threading.active_count()))
    return {START_S.key: start_s, STOP_S.key: stop_s, RSS_KIB.key: rss / units / 1024,
            IDLE_CPU.key: cpu}


def _blocked(inbox: queue.Queue) -> None:
    while inbox.get() is not None:
        pass


def _child_threads(units: int, idle_s: float) -> Dict[str, float]:
    gc.collect()
    before = _rss_bytes()
    began = time.perf_counter()
    inboxes: List[queue.Queue] = []
    threads: List[threading.Thread] = []
    for k in range(units):
        inbox: queue.Queue = queue.Queue()
        thread = threading.Thread(target=_blocked, args=(inbox,), name="plain-%04d" % k,
                                  daemon=True)
        thread.start()
        inboxes.append(inbox)
        threads.append(thread)
    start_s = time.perf_counter() - began
    rss = _rss_bytes() - before
    cpu = _idle(idle_s)
    began = time.perf_counter()
    for inbox in inboxes:
        inbox.put(None)
    for thread in threads:
        thread.join()
    stop_s = time.perf_counter() - began
    if threading.active_count() != 1:
        raise BenchmarkError("%d threads left" % threading.active_count())
    return {START_S.key: start_s, STOP_S.key: stop_s, RSS_KIB.key: rss / units / 1024,
            IDLE_CPU.key: cpu}


_CHILDREN = {"ours": _child_ours, "threads": _child_threads}


def _child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale --child")
    parser.add_argument("kind", choices=sorted(_CHILDREN))
    parser.add_argument("units", type=int)
    parser.add_argument("idle_s", type=float)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    # Starting a thread is a hand-off between two threads; spread over CPUs shared
    # with other tenants, its wake-ups swung start times tenfold between rounds.
    cpu = None if args.no_pin else pin_to_one_cpu()
    sample = _CHILDREN[args.kind](args.units, args.idle_s)
    print(json.dumps(dict(sample, cpu=-1 if cpu is None else cpu)))
    return 0


# ---------------------------------------------------------- in the parent
def _in_child(kind: str, units: int, idle_s: float, pin: bool) -> Sample:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--child", kind, str(units), str(idle_s)]
        + ([] if pin else ["--no-pin"]),
        cwd=_ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if done.returncode != 0:
        raise BenchmarkError("scale child %s failed (%d): %s"
                             % (kind, done.returncode, done.stderr.strip()[-2000:]))
    sample: Dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return sample


def build(options: Options) -> Scenario:
    """The scale scenario for ``options`` (quick: a 1 s idle period)."""
    idle_s = QUICK_IDLE_S if options.quick else DEFAULT_IDLE_S
    pin = options.pin is not False  # each child pins itself, unless --no-pin
    within = Target("<=", 1.3)  # issue 18 (issue 5 had 1.5x)
    return Scenario(
        name="scale",
        title="%s services vs %s plain threads: start, idle %g s, stop; a fresh "
              "process per repetition" % (format(UNITS, ","), format(UNITS, ","), idle_s),
        metrics=(START_S, STOP_S, RSS_KIB, IDLE_CPU),
        variants=(
            Variant("ours", "1,000 services",
                    functools.partial(_in_child, "ours", UNITS, idle_s, pin), ours=True),
            Variant("threads", "1,000 plain threads",
                    functools.partial(_in_child, "threads", UNITS, idle_s, pin)),
        ),
        baseline="threads",
        ratios=(Ratio("services / threads", "ours", "threads", START_S.key, within),
                Ratio("services / threads", "ours", "threads", STOP_S.key, within),
                Ratio("services / threads", "ours", "threads", RSS_KIB.key, within)),
        limits=(Limit("ours", IDLE_CPU.key, Target("<", 1.0)),),
        params={"units": UNITS, "idle_s": idle_s, "process_per_repetition": True,
                "child_pinned_to_one_cpu": pin},
        notes=("start includes creating (add_service / Queue + Thread); idle CPU is "
               "held to an absolute target (the plain threads use next to none)",
               "every child is pinned to one CPU (os.sched_setaffinity): unpinned, "
               "thread hand-offs across this shared machine's CPUs made start times "
               "swing tenfold between rounds" if pin else
               "children not pinned (--no-pin): start times swing with the machine",),
        repeats=REPEATS,
        repeats_reason="each repetition starts 1,000 threads in a fresh interpreter and "
                       "idles %g s, so %d interleaved rounds (after a warm-up) keep this "
                       "scenario near %d s" % (idle_s, REPEATS,
                                               round((REPEATS + 1) * 2 * (idle_s + 0.7))),
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child_main(argv[1:])
    return run_alone(build, "benchmarks.scale", argv)


if __name__ == "__main__":
    sys.exit(run())
