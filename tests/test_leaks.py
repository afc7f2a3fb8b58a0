"""Leaks: after close() no thread the host started is alive, and creating, using
and closing many hosts leaves the thread count and memory flat."""
from __future__ import annotations

import gc
import os
import threading
import tracemalloc

import pytest
from support.timing import HANG

from plugin_service import (
    Ingress,
    IngressEvent,
    LifecycleState,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    ToolPlugin,
    errors,
)

INGRESS = "in"
HOSTS = 200
WARM_UP = 20


class Threads(ServicePlugin):
    """Records the thread of every callback; ``"raise"`` raises, anything else echoes."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self, seen: set) -> None:
        self.seen = seen

    def start(self) -> None:
        self.seen.add(threading.current_thread())

    def handle_ingress(self, event, ctx):
        self.seen.add(threading.current_thread())
        if event.payload == "raise":
            raise ValueError("handler failed")
        return event.payload

    def stop(self) -> None:
        self.seen.add(threading.current_thread())


class ToolThreads(ToolPlugin):
    """Records its pool thread; every call waits at ``barrier`` for the others, so
    that concurrent calls each hold a pool thread of their own."""

    def __init__(self, seen: set, barrier: threading.Barrier) -> None:
        self.seen = seen
        self.barrier = barrier

    def invoke(self, request, ctx):
        self.seen.add(threading.current_thread())
        self.barrier.wait(HANG)
        return request


def send(payload):
    return IngressEvent(INGRESS, "test", payload)


def test_no_thread_the_host_started_is_alive_after_close():
    before = set(threading.enumerate())
    seen: set = set()  # every thread a service callback ran on
    tool_threads: set = set()  # every pool thread a tool call ran on
    started: set = set()  # every thread alive meanwhile that was not there before
    barrier = threading.Barrier(3)
    host = PluginHost(tool_workers=3)
    try:
        steady = host.add_service("steady", lambda: Threads(seen))
        restarted = host.add_service("restarted", lambda: Threads(seen))
        failing = host.add_service("failing", lambda: Threads(seen), ServiceConfig(fail_after=1))
        timing = host.add_service("timing", lambda: Threads(seen),
                                  ServiceConfig(dispatch_timeout=5.0))
        host.start_all(timeout=HANG)
        assert steady.submit(send(1)).result(timeout=HANG) == 1
        assert timing.submit(send(2)).result(timeout=HANG) == 2  # arms the watchdog
        assert restarted.submit(send(3)).result(timeout=HANG) == 3
        restarted.stop(timeout=HANG)
        restarted.restart(timeout=HANG)  # a second life: a second worker thread
        assert restarted.submit(send(4)).result(timeout=HANG) == 4
        with pytest.raises(errors.DispatchFailed):
            failing.submit(send("raise")).result(timeout=HANG)
        assert failing.wait_for(LifecycleState.FAILED, timeout=HANG)

        host.add_tool("tool", ToolThreads(tool_threads, barrier))
        calls = [host.submit_tool("tool", n) for n in range(3)]
        assert [c.result(timeout=HANG) for c in calls] == [0, 1, 2]

        started = set(threading.enumerate()) - before
        names = sorted(t.name for t in started | seen | tool_threads)
        assert sorted(t.name for t in seen) == [
            "failing", "restarted", "restarted", "steady", "timing"], names
        assert len(tool_threads) == 3, names
        # Beyond its workers and pool threads the host runs its watchdog.
        assert len(started - seen - tool_threads) >= 1, names
    finally:
        barrier.abort()
        host.close(timeout=HANG)
    alive = sorted(t.name for t in (started | seen | tool_threads) if t.is_alive())
    assert alive == []
    assert sorted(t.name for t in set(threading.enumerate()) - before) == []


def use_one_host() -> None:
    """Create a host, start a service, submit, call a tool, close."""
    with PluginHost(tool_workers=2) as host:
        seen: set = set()
        handle = host.add_service("svc", lambda: Threads(seen))
        host.add_tool("echo", lambda request, ctx: request, timeout=HANG)
        handle.start(timeout=HANG)
        futures = [handle.submit(send(n)) for n in range(5)]
        assert [f.result(timeout=HANG) for f in futures] == [0, 1, 2, 3, 4]
        with pytest.raises(errors.DispatchFailed):
            handle.submit(send("raise")).result(timeout=HANG)
        assert host.call_tool("echo", "x") == "x"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


#: Allocations that are not objects left behind: a ``WeakSet``'s hash table
#: (``threading._dangling`` holds every thread ever started, weakly) doubles when
#: the threads started earlier in the session push it past its fill limit, a
#: one-time 128 KiB that lands inside the measured loop or not depending on how
#: many threads the tests before this one started.
_NOT_LEFT_BEHIND = (tracemalloc.Filter(False, "*/_weakrefset.py"),)


def _traced() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces(_NOT_LEFT_BEHIND)
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_many_hosts_leave_thread_count_and_memory_flat():
    tracemalloc.start()
    try:
        for _ in range(WARM_UP):  # fills the caches a first host fills (re, datetime, ...)
            use_one_host()
        gc.collect()
        threads_before = threading.active_count()
        rss_before = rss_bytes()
        traced_before = _traced()
        for _ in range(HOSTS):
            use_one_host()
        gc.collect()
        traced_after = _traced()
        threads_after = threading.active_count()
        rss_after = rss_bytes()
    finally:
        tracemalloc.stop()

    assert threads_after <= threads_before
    # One host left behind keeps about 30 kB (service, queue, diagnostics, executor)
    # and even one diagnostic per host would add some 500 bytes; a few hundred
    # bytes in all is allocator and cache noise.
    grown = traced_after - traced_before
    assert grown < HOSTS * 512, "traced memory grew by %d bytes over %d hosts" % (grown, HOSTS)
    # RSS is noisy (allocator arenas, thread stacks): only catch gross growth.
    assert rss_after - rss_before < 16 * 2 ** 20
