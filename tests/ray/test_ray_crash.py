"""What only the Ray backend can meet: a plugin process that dies, values that cannot
cross the process boundary, and tools run as Ray tasks.

Every test runs on the session's Ray instance (``ray_session`` in
``conftest.py``; skipped without Ray) with a fresh ``PluginHost(backend=
RayBackend())``; the ``host`` fixture checks the accounting invariants of every
service before and after closing it.
"""
from __future__ import annotations

import os
import threading

import pytest
from support.backends import TIMEOUT, BackendGates, exits_within, failure_of, started
from support.contract import (
    ExitOnStart,
    HoldsLock,
    OddError,
    event,
    tool_pid,
    tool_raise,
    tool_wait,
    tool_wait_then_arrive,
)
from support.states import FAILED, RUNNING
from support.timing import PROCESS_HANG

from plugin_service import (
    DiagnosticKind,
    PluginHost,
    RestartPolicy,
    ServiceConfig,
    errors,
)


# ------------------------------------------------------------ process crash
def test_handler_killing_its_process_fails_the_event_and_the_service(host: PluginHost
                                                                      ) -> None:
    svc = started(host, fail_after=None)  # a crash fails the service whatever fail_after
    error = failure_of(svc.submit(event("exit")))
    assert isinstance(error, errors.DispatchFailed)
    assert isinstance(error.__cause__, errors.PluginCrashed)
    assert error.__cause__.service == "svc"
    status = svc.status()
    assert status.state is FAILED
    assert status.failure is not None and status.failure.kind is DiagnosticKind.DISPATCH_FAILED
    assert "PluginCrashed" in status.failure.message


def test_queued_events_are_dropped_with_service_failed_without_a_restart_policy(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host)
    gate = gates.new()
    crashing = svc.submit(event("gate_exit", gate))
    assert gate.entered()
    queued = [svc.submit(event("echo", n)) for n in range(3)]
    gate.open()
    assert isinstance(failure_of(crashing).__cause__, errors.PluginCrashed)
    for future in queued:
        error = failure_of(future)
        assert isinstance(error, errors.ServiceFailed)
    assert svc.status().counters.dropped == 3
    kinds = [letter.diagnostic.kind for letter in host.dead_letters()]
    assert kinds == [DiagnosticKind.DISPATCH_FAILED] + [DiagnosticKind.SERVICE_FAILED] * 3


def test_restart_policy_brings_up_a_fresh_actor_that_serves_the_queued_events(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, restart=RestartPolicy(max_restarts=1, backoff=0.1))
    first_pid = svc.submit(event("pid")).result(PROCESS_HANG)
    gate = gates.new()
    crashing = svc.submit(event("gate_exit", gate))
    assert gate.entered()
    queued = [svc.submit(event("pid")) for _ in range(3)]
    gate.open()
    assert isinstance(failure_of(crashing).__cause__, errors.PluginCrashed)
    pids = {future.result(PROCESS_HANG) for future in queued}
    assert len(pids) == 1 and first_pid not in pids and os.getpid() not in pids
    status = svc.status()
    assert (status.state, status.restarts, status.failure) == (RUNNING, 1, None)
    assert exits_within(first_pid, 0)  # the crashed actor's process is gone


def test_crashes_past_the_intensity_grow_the_backoff_then_give_up(host: PluginHost) -> None:
    give_ups: list = []
    gave_up = threading.Event()

    def on_give_up(name: str, diagnostic: object) -> None:
        give_ups.append((name, diagnostic))
        gave_up.set()

    svc = started(host, restart=RestartPolicy(max_restarts=2, window=None, backoff=0.05,
                                              multiplier=2.0, on_give_up=on_give_up))
    waits = []
    for _ in range(2):  # each crash brings up a fresh actor, after a longer wait
        assert isinstance(failure_of(svc.submit(event("exit"))).__cause__,
                          errors.PluginCrashed)
        assert svc.wait_for(RUNNING, PROCESS_HANG)
        waits.append(svc.status().restart_backoff)
    assert waits == pytest.approx([0.05, 0.1])
    failure_of(svc.submit(event("exit")))
    assert gave_up.wait(PROCESS_HANG)
    [(name, diagnostic)] = give_ups
    status = svc.status()
    assert (name, diagnostic, status.state, status.restarts) == ("svc", status.failure,
                                                                  FAILED, 2)
    assert "PluginCrashed" in status.failure.message


def test_start_killing_its_process_fails_the_start(host: PluginHost) -> None:
    handle = host.add_service("svc", ExitOnStart,
                              ServiceConfig(restart=RestartPolicy(backoff=0.1)))
    with pytest.raises(errors.ServiceFailed, match="PluginCrashed"):
        handle.start(timeout=PROCESS_HANG)
    status = handle.status()
    assert status.state is FAILED
    assert status.failure is not None and status.failure.kind is DiagnosticKind.SERVICE_FAILED
    assert status.restarts == 0  # a failed start is reported, not restarted


def test_stuck_handler_actor_is_killed_after_cancel_grace(host: PluginHost) -> None:
    svc = started(host, dispatch_timeout=TIMEOUT, cancel_grace=TIMEOUT)
    pid = svc.submit(event("pid")).result(PROCESS_HANG)
    assert isinstance(failure_of(svc.submit(event("sleep", 4.0))), errors.DispatchTimeout)
    assert svc.wait_for(FAILED, PROCESS_HANG)
    failure = svc.status().failure
    assert failure is not None and "ignored cancellation" in failure.message
    assert exits_within(pid, 2.0)  # killed at the grace, long before its sleep ends


def test_restart_after_a_stuck_handler_gets_a_fresh_actor(host: PluginHost) -> None:
    svc = started(host, dispatch_timeout=TIMEOUT, cancel_grace=TIMEOUT,
                  restart=RestartPolicy(max_restarts=1, backoff=0.1))
    pid = svc.submit(event("pid")).result(PROCESS_HANG)
    assert isinstance(failure_of(svc.submit(event("sleep", 4.0))), errors.DispatchTimeout)
    assert svc.wait_for(FAILED, PROCESS_HANG) and svc.wait_for(RUNNING, PROCESS_HANG)
    assert svc.submit(event("pid")).result(PROCESS_HANG) != pid
    assert svc.status().restarts == 1


# ------------------------------------------------------------ pickling
def test_unpicklable_event_is_dispatch_failed_naming_the_pickling_error(host: PluginHost
                                                                        ) -> None:
    svc = started(host, fail_after=None)
    error = failure_of(svc.submit(event("echo", threading.Lock())))
    assert isinstance(error, errors.DispatchFailed)
    assert isinstance(error.__cause__, TypeError)
    assert "serialize" in str(error.__cause__)
    assert "lock" in str(error.__cause__)
    assert svc.submit(event("count")).result(PROCESS_HANG) == 1  # the plugin never saw it


def test_unpicklable_result_is_dispatch_failed_naming_the_pickling_error(host: PluginHost
                                                                         ) -> None:
    svc = started(host, fail_after=None)
    error = failure_of(svc.submit(event("lock")))
    assert isinstance(error, errors.DispatchFailed)
    assert isinstance(error.__cause__, TypeError)
    assert "pickle" in str(error.__cause__)
    assert svc.state is RUNNING


def test_exception_pickle_cannot_rebuild_is_still_dispatch_failed(host: PluginHost) -> None:
    svc = started(host, fail_after=None)
    error = failure_of(svc.submit(event("raise_odd")))
    assert isinstance(error, errors.DispatchFailed)
    assert error.__cause__ is not None and not isinstance(error.__cause__, OddError)
    assert "OddError" in str(error.__cause__)


def test_unpicklable_plugin_instance_fails_its_start(host: PluginHost) -> None:
    handle = host.add_service("svc", HoldsLock())
    with pytest.raises(errors.ServiceFailed, match="pickle|serialize"):
        handle.start(timeout=PROCESS_HANG)
    assert handle.state is FAILED


# ------------------------------------------------------------ remote tools
def test_remote_tool_runs_as_a_ray_task(host: PluginHost) -> None:
    host.add_tool("where", tool_pid, remote=True, timeout=PROCESS_HANG)
    request, pid = host.call_tool("where", "hello")
    assert request == "hello" and pid != os.getpid()
    assert host.status().tools["where"].counters.succeeded == 1


def test_remote_tool_failure_is_tool_failed_with_the_cause(host: PluginHost) -> None:
    host.add_tool("broken", tool_raise, remote=True, timeout=PROCESS_HANG)
    with pytest.raises(errors.ToolFailed) as info:
        host.call_tool("broken", "bad request")
    assert type(info.value.__cause__) is ValueError
    assert str(info.value.__cause__) == "bad request"
    assert host.status().tools["broken"].counters.failed == 1


def test_remote_tool_past_its_timeout_is_tool_timeout(host: PluginHost) -> None:
    host.add_tool("slow", tool_wait, remote=True, timeout=TIMEOUT)
    with pytest.raises(errors.ToolTimeout) as info:
        host.call_tool("slow", 2.0)
    assert info.value.timeout == TIMEOUT
    assert host.status().tools["slow"].counters.timed_out == 1


def test_remote_tool_sees_ctx_cancelled_at_its_deadline(host: PluginHost, gates: BackendGates) -> None:
    # A timeout the task surely starts within, even when Ray must start a worker.
    host.add_tool("slow", tool_wait_then_arrive, remote=True, timeout=3 * TIMEOUT)
    started, woke = gates.new(), gates.new()
    with pytest.raises(errors.ToolTimeout):
        host.call_tool("slow", (started, woke, 3.0))
    assert started.entered(timeout=1.0)
    assert woke.entered(timeout=2.0)
