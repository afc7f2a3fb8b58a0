"""Scenario 4, tool call overhead: ``call_tool`` on a no-op tool, one call at a time.

Ours: ``PluginHost()`` (``tool_workers=4``) with a no-op tool (no timeout, no
bulkhead); each operation is ``host.call_tool("noop", request)``. The baseline is a
bare ``ThreadPoolExecutor(max_workers=4).submit(noop, request, None).result()``,
the executor our tools run on. N calls in sequence from one thread, each timed on
its own; a repetition reports p50 and p99.

Run alone with ``python -m benchmarks.tools [--quick]``.
"""
from __future__ import annotations

import functools
import sys
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter
from typing import List, Optional, Sequence

from plugin_service import PluginHost

from ._common import LATENCY_PIN_REASON, WAIT_S, check_count, run_alone
from ._harness import P50_US, P99_US, Options, Ratio, Sample, Scenario, Target, Variant, latency
from ._workloads import noop, noop_tool

__all__ = ["build", "DEFAULT_OPS", "QUICK_OPS", "TOOL_WORKERS"]

DEFAULT_OPS = 20_000
QUICK_OPS = 3_000
TOOL_WORKERS = 4  # PluginHost's default


def _ours(n: int) -> Sample:
    with PluginHost(tool_workers=TOOL_WORKERS) as host:
        host.add_tool("noop", noop_tool)
        call = host.call_tool
        call("noop", -1)  # a pool thread exists before the clock starts
        clock = perf_counter
        times: List[float] = []
        record = times.append
        for i in range(n):
            began = clock()
            call("noop", i)
            record(clock() - began)
        check_count("ours", host.status().tools["noop"].counters.succeeded, n + 1,
                    "tool calls succeeded")
    return latency(times)


def _executor(n: int) -> Sample:
    with ThreadPoolExecutor(max_workers=TOOL_WORKERS,
                            thread_name_prefix="bench-executor") as pool:
        submit = pool.submit
        submit(noop, -1, None).result(WAIT_S)  # a pool thread exists before the clock starts
        clock = perf_counter
        times: List[float] = []
        record = times.append
        for i in range(n):
            began = clock()
            submit(noop, i, None).result(WAIT_S)
            record(clock() - began)
    return latency(times)


def build(options: Options) -> Scenario:
    """The tool-overhead scenario for ``options`` (operation count, quick)."""
    n = options.events or (QUICK_OPS if options.quick else DEFAULT_OPS)
    return Scenario(
        name="tools",
        title="%s sequential call_tool on a no-op tool, tool_workers=%d"
              % (format(n, ","), TOOL_WORKERS),
        metrics=(P50_US, P99_US),
        variants=(
            Variant("ours", "call_tool", functools.partial(_ours, n), ours=True),
            Variant("executor", "executor submit+result", functools.partial(_executor, n)),
        ),
        baseline="executor",
        ratios=(Ratio("call_tool / executor", "ours", "executor", P50_US.key,
                      Target("<=", 1.3)),
                Ratio("call_tool / executor", "ours", "executor", P99_US.key)),
        params={"operations": n, "tool_workers": TOOL_WORKERS, "timeout": None,
                "max_concurrency": None},
        pinned=True,
        pin_reason=LATENCY_PIN_REASON,
    )


def run(argv: Optional[Sequence[str]] = None) -> int:
    return run_alone(build, "benchmarks.tools", argv)


if __name__ == "__main__":
    sys.exit(run())
