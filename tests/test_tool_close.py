"""Closing a host with tool calls in every state (issues 12 and 20): close() is
bounded, a stuck call is abandoned on a daemon thread and counted, and every
admitted call ends in exactly one counted outcome."""
from __future__ import annotations

import math
import queue
import random
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import CancelledError, wait

import attrs
import pytest
from support.timing import HANG, SHORT, STARTS_WITHIN
from support.tools import RecordingTool, raising_tool

from plugin_service import PluginHost, ToolCounters, errors


def tool_status(host, name):
    return host.status().tools[name]


def close_in_thread(host, **kwargs):
    """Start ``host.close(**kwargs)`` on a daemon thread; returns its done Event."""
    closed = threading.Event()

    def close():
        try:
            host.close(**kwargs)
        finally:
            closed.set()

    threading.Thread(target=close, daemon=True).start()
    return closed


# --------------------------------------------------------- tool_cancel_grace


@pytest.mark.parametrize("grace", [-1, -0.5, True, "5", math.nan, [1]])
def test_tool_cancel_grace_refuses_what_is_not_seconds(grace):
    with pytest.raises(ValueError, match="tool_cancel_grace"):
        PluginHost(tool_cancel_grace=grace)


@pytest.mark.parametrize("grace", [0, 0.25, 5, None])
def test_tool_cancel_grace_accepts_seconds_or_none(grace):
    PluginHost(tool_cancel_grace=grace).close()


# ------------------------------------------------------------ the pool


def test_pool_threads_are_daemon_threads(make_host):
    host = make_host()
    recorder = RecordingTool()
    host.add_tool("rec", recorder)

    host.call_tool("rec", 1, timeout=HANG)

    (thread,) = recorder.threads
    assert thread.daemon


def test_pool_starts_threads_lazily_and_never_more_than_tool_workers(make_host, make_gate):
    host = make_host(tool_workers=2)
    gate = make_gate()
    host.add_tool("gate", gate)
    before = {t for t in threading.enumerate() if t.name.startswith("plugin_service-tools-")}

    futures = [host.submit_tool("gate", i) for i in range(4)]
    assert gate.wait_entered(2)
    running = {t for t in threading.enumerate()
               if t.name.startswith("plugin_service-tools-")} - before
    gate.release()

    assert [f.result(timeout=HANG) for f in futures] == [0, 1, 2, 3]
    assert len(running) == 2
    assert set(gate.threads) == running


# ------------------------------------------------------- close() is bounded


def test_close_without_timeout_abandons_a_stuck_call_after_the_grace(make_host, make_stuck):
    host = make_host(tool_cancel_grace=SHORT)
    stuck = make_stuck()
    host.add_tool("stuck", stuck)
    future = host.submit_tool("stuck", 1)  # no timeout: only close() can end it
    assert stuck.entered.wait(HANG)

    assert close_in_thread(host).wait(HANG)

    (ctx,) = stuck.contexts
    assert ctx.cancelled  # cancelled when close began
    assert isinstance(future.exception(timeout=0), errors.ToolTimeout)
    status = tool_status(host, "stuck")
    assert status.abandoned == 1
    assert status.counters == ToolCounters(calls=1, timed_out=1)
    assert (status.in_flight, status.overdue) == (0, 1)  # it still holds its slot


def test_abandoned_call_holds_its_slot_until_its_thread_returns(make_host, make_stuck):
    host = make_host(tool_cancel_grace=0)
    stuck = make_stuck()
    host.add_tool("stuck", stuck, max_concurrency=1)
    host.submit_tool("stuck", 1)
    assert stuck.entered.wait(HANG)
    host.close()
    assert tool_status(host, "stuck").overdue == 1

    stuck.release()
    (thread,) = stuck.threads
    thread.join(HANG)

    assert not thread.is_alive()
    status = tool_status(host, "stuck")
    assert (status.in_flight, status.overdue, status.abandoned) == (0, 0, 1)
    assert status.counters == ToolCounters(calls=1, timed_out=1)  # not counted again


def test_call_without_timeout_is_cancelled_when_close_begins_and_keeps_its_result(make_host):
    host = make_host(tool_cancel_grace=HANG)
    entered = threading.Event()

    def patient(request, ctx):
        entered.set()
        return ("cancelled", ctx.wait(4 * HANG))

    host.add_tool("patient", patient)
    future = host.submit_tool("patient", 1)
    assert entered.wait(HANG)

    assert close_in_thread(host).wait(HANG)

    assert future.result(timeout=0) == ("cancelled", True)
    status = tool_status(host, "patient")
    assert status.counters == ToolCounters(calls=1, succeeded=1)
    assert status.abandoned == 0


def test_close_waits_for_a_timed_out_call_within_its_grace(make_host, make_stuck):
    host = make_host(tool_workers=1, tool_cancel_grace=4 * HANG)
    stuck = make_stuck()
    host.add_tool("stuck", stuck)
    host.add_tool("queued", RecordingTool())
    call = host.submit_tool("stuck", 1, timeout=STARTS_WITHIN)
    assert stuck.entered.wait(HANG)
    assert isinstance(call.exception(timeout=HANG), errors.ToolTimeout)
    queued = host.submit_tool("queued", 2)  # behind the stuck call on the one thread
    close_began = threading.Event()
    queued.add_done_callback(lambda f: close_began.set())  # dropped as close begins

    closed = close_in_thread(host)
    assert close_began.wait(HANG)
    assert not closed.is_set()  # close waits: the grace has not run out
    stuck.release()

    assert closed.wait(HANG)
    assert isinstance(queued.exception(timeout=0), errors.HostClosed)
    assert tool_status(host, "stuck").abandoned == 0
    assert tool_status(host, "stuck").overdue == 0


def test_close_timeout_bounds_a_stuck_call_even_without_a_grace(make_host, make_stuck):
    host = make_host(tool_cancel_grace=None)
    stuck = make_stuck()
    host.add_tool("stuck", stuck)
    future = host.submit_tool("stuck", 1)
    assert stuck.entered.wait(HANG)

    assert close_in_thread(host, timeout=SHORT).wait(HANG)

    assert isinstance(future.exception(timeout=0), errors.ToolTimeout)
    assert tool_status(host, "stuck").abandoned == 1


def test_close_drops_calls_waiting_for_a_thread_and_counts_them(make_host, make_stuck):
    host = make_host(tool_workers=1, tool_cancel_grace=0)
    stuck, recorder = make_stuck(), RecordingTool()
    host.add_tool("stuck", stuck)
    host.add_tool("rec", recorder)
    host.submit_tool("stuck", 0)
    assert stuck.entered.wait(HANG)
    waiting = [host.submit_tool("rec", i) for i in range(3)]

    host.close()

    for future in waiting:
        assert isinstance(future.exception(timeout=0), errors.HostClosed)
    status = tool_status(host, "rec")
    assert status.counters == ToolCounters(calls=3, dropped=3)
    assert (status.in_flight, status.overdue) == (0, 0)
    assert recorder.requests == []


# ---------------------------------------------- exiting with a stuck tool

_STUCK_CHILD = textwrap.dedent("""
    import sys, threading, time
    from plugin_service import PluginHost

    entered = threading.Event()

    def stuck(request, ctx):
        entered.set()
        time.sleep(60)  # ignores ctx, like a socket read without a timeout

    with PluginHost() as host:
        host.add_tool("stuck", stuck, timeout=0.5)
        future = host.submit_tool("stuck", None)
        if not entered.wait(20):
            sys.exit("the tool never ran")
        print("leaving", flush=True)
        if sys.argv[1] == "close-timeout":
            host.close(timeout=1)
    status = host.status().tools["stuck"]
    print("left", type(future.exception(0)).__name__, status.abandoned, flush=True)
""")


def _lines(stream, into):
    for line in stream:
        into.put(line.strip())
    into.put(None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["plain-with", "close-timeout"])
def test_process_exits_soon_after_leaving_the_with_block_around_a_stuck_tool(how):
    child = subprocess.Popen([sys.executable, "-c", _STUCK_CHILD, how],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: "queue.Queue" = queue.Queue()
    threading.Thread(target=_lines, args=(child.stdout, lines), daemon=True).start()
    try:
        assert lines.get(timeout=30) == "leaving"
        # Within the call's timeout plus the default 5 s grace, never the 60 s sleep.
        assert lines.get(timeout=20) == "left ToolTimeout 1"
        assert child.wait(timeout=10) == 0, child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ------------------------------------------------- one outcome for every call


def _check(snapshot, name):
    counters = snapshot.counters
    outcomes = (counters.succeeded + counters.failed + counters.timed_out
                + counters.dropped)
    assert counters.calls == outcomes + snapshot.in_flight, (name, snapshot)
    assert snapshot.in_flight >= 0 and snapshot.overdue >= 0, (name, snapshot)
    if snapshot.max_concurrency is not None:
        assert snapshot.in_flight + snapshot.overdue <= snapshot.max_concurrency, snapshot


@pytest.mark.timeout(120)
def test_every_admitted_call_ends_in_one_counted_outcome_while_status_is_sampled():
    host = PluginHost(tool_workers=3, tool_cancel_grace=HANG)
    fail = raising_tool("no")

    def slow(request, ctx):
        return ctx.wait(HANG)  # cooperative: returns when cancelled

    host.add_tool("ok", lambda request, ctx: request)
    host.add_tool("bad", fail)
    host.add_tool("slow", slow, timeout=0.005, max_concurrency=2)
    host.add_tool("limited", lambda request, ctx: request, max_concurrency=1)
    names = ["ok", "bad", "slow", "limited"]
    submitted = {name: [] for name in names}  # every admitted call's future
    lock = threading.Lock()
    half_way = threading.Barrier(4)  # 3 producers and the closer
    stop_sampling = threading.Event()
    problems = []

    def produce(seed):
        chooser = random.Random(seed)
        for i in range(400):
            if i == 200:
                half_way.wait(HANG)
            name = chooser.choice(names)
            try:
                future = host.submit_tool(name, i)
            except (errors.ToolBusy, errors.HostClosed):
                continue
            with lock:
                submitted[name].append(future)
            if chooser.random() < 0.3:
                future.cancel()

    def sample():
        for _ in range(1_000_000):  # bounded; stops at the event long before
            if stop_sampling.is_set():
                return
            try:
                for name, snapshot in host.status().tools.items():
                    _check(snapshot, name)
            except AssertionError as exc:
                problems.append(exc)
                return

    producers = [threading.Thread(target=produce, args=(seed,)) for seed in range(3)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    for thread in producers:
        thread.start()
    half_way.wait(HANG)
    host.close(timeout=4 * HANG)  # while the producers are still submitting
    for thread in producers:
        thread.join(HANG)
    stop_sampling.set()
    sampler.join(HANG)

    assert problems == []
    assert not any(t.is_alive() for t in producers + [sampler])
    status = host.status()
    for name in names:
        futures = submitted[name]
        assert wait(futures, timeout=HANG).not_done == set()
        seen = ToolCounters(calls=len(futures))
        for future in futures:
            try:
                future.result(timeout=0)
                seen = _plus(seen, "succeeded")
            except CancelledError:
                seen = _plus(seen, "dropped")
            except errors.HostClosed:
                seen = _plus(seen, "dropped")
            except errors.ToolTimeout:
                seen = _plus(seen, "timed_out")
            except errors.ToolFailed:
                seen = _plus(seen, "failed")
        snapshot = status.tools[name]
        _check(snapshot, name)
        assert snapshot.in_flight == 0
        assert snapshot.counters == attrs.evolve(seen, rejected=snapshot.counters.rejected)


def _plus(counters, field):
    return attrs.evolve(counters, **{field: getattr(counters, field) + 1})


def test_tool_closing_its_own_host_is_not_abandoned_and_keeps_its_result(make_host):
    host = make_host(tool_cancel_grace=0)

    def closer(request, ctx):
        host.close()
        return ("closed", ctx.cancelled)

    host.add_tool("closer", closer)

    assert host.submit_tool("closer", 1).result(timeout=HANG) == ("closed", True)
    status = tool_status(host, "closer")
    assert status.abandoned == 0
    assert status.counters == ToolCounters(calls=1, succeeded=1)
