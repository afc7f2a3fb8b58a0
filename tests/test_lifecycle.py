"""Lifecycle: READY -> STARTING -> RUNNING -> STOPPING -> STOPPED, or FAILED."""
from __future__ import annotations

import threading
import time

import pytest
from support.doubles import BlockingStart, Echo, FailingStart, Raising, Recorder, event
from support.states import FAILED, READY, RUNNING, STARTING, STOPPED
from support.timing import HANG

from plugin_service import (
    DiagnosticKind,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    ServiceStatus,
    errors,
)


def test_added_service_is_ready(host):
    handle = host.add_service("svc", Echo())
    assert handle.name == "svc"
    assert handle.state is READY
    assert handle.status().state is READY


def test_start_runs_plugin_start_and_returns_running_status(host):
    plugin = Echo()
    handle = host.add_service("svc", plugin)
    status = handle.start(timeout=HANG)
    assert isinstance(status, ServiceStatus)
    assert status.state is RUNNING
    assert handle.state is RUNNING
    assert [name for name, _ in plugin.calls] == ["start"]


def test_service_is_starting_while_plugin_start_runs(host, gates, background):
    plugin = BlockingStart(gates.new())
    handle = host.add_service("svc", plugin)
    started = background(handle.start, HANG)
    assert plugin.in_start.wait(HANG)
    assert handle.state is STARTING
    plugin.gate.set()
    assert started.result(timeout=HANG).state is RUNNING


def test_start_of_running_service_is_a_no_op_returning_status(host):
    plugin = Echo()
    handle = host.add_service("svc", plugin)
    handle.start(timeout=HANG)
    status = handle.start(timeout=HANG)
    assert status.state is RUNNING
    assert [name for name, _ in plugin.calls] == ["start"]


def test_start_that_raises_fails_with_service_failed(host):
    handle = host.add_service("svc", FailingStart(RuntimeError("database unreachable")))
    with pytest.raises(errors.ServiceFailed) as raised:
        handle.start(timeout=HANG)
    assert raised.value.state is FAILED
    assert handle.state is FAILED


def test_failed_start_records_service_failed_diagnostic_with_exception_text(host):
    handle = host.add_service("svc", FailingStart(RuntimeError("database unreachable")))
    with pytest.raises(errors.ServiceFailed):
        handle.start(timeout=HANG)
    failure = handle.status().failure
    assert failure.kind is DiagnosticKind.SERVICE_FAILED
    assert "database unreachable" in failure.message


def test_start_exceeding_start_timeout_fails(host, gates):
    handle = host.add_service("svc", BlockingStart(gates.new()), ServiceConfig(start_timeout=0.05))
    began = time.monotonic()
    with pytest.raises(errors.ServiceFailed):
        handle.start()
    assert time.monotonic() - began < HANG
    assert handle.state is FAILED
    assert handle.status().failure.kind is DiagnosticKind.SERVICE_FAILED


def test_start_bound_is_the_smaller_of_timeout_and_start_timeout(host, gates):
    handle = host.add_service("svc", BlockingStart(gates.new()), ServiceConfig(start_timeout=60.0))
    began = time.monotonic()
    with pytest.raises(errors.ServiceFailed):
        handle.start(timeout=0.05)
    assert time.monotonic() - began < HANG
    assert handle.state is FAILED


def test_start_returning_after_its_bound_is_followed_by_plugin_stop(host, gates):
    plugin = BlockingStart(gates.new())
    handle = host.add_service("svc", plugin, ServiceConfig(start_timeout=0.05))
    with pytest.raises(errors.ServiceFailed):
        handle.start()
    plugin.gate.set()
    assert plugin.stopped.wait(HANG)
    assert handle.state is FAILED


def test_stop_of_ready_service_stops_without_calling_plugin(host):
    plugin = Echo()
    handle = host.add_service("svc", plugin)
    status = handle.stop(timeout=HANG)
    assert status.state is STOPPED
    assert plugin.calls == []


def test_stop_of_stopped_service_is_a_no_op_returning_status(host):
    plugin = Echo()
    handle = host.add_service("svc", plugin)
    handle.start(timeout=HANG)
    handle.stop(timeout=HANG)
    status = handle.stop(timeout=HANG)
    assert status.state is STOPPED
    assert [name for name, _ in plugin.calls] == ["start", "stop"]


def test_stop_of_failed_service_is_a_no_op_returning_status(host):
    handle = host.add_service("svc", FailingStart(RuntimeError("nope")))
    with pytest.raises(errors.ServiceFailed):
        handle.start(timeout=HANG)
    status = handle.stop(timeout=HANG)
    assert status.state is FAILED
    assert handle.state is FAILED


def test_start_of_stopped_service_raises_lifecycle_error(host):
    handle = host.add_service("svc", Echo())
    handle.start(timeout=HANG)
    handle.stop(timeout=HANG)
    with pytest.raises(errors.LifecycleError) as raised:
        handle.start(timeout=HANG)
    assert raised.value.kind is DiagnosticKind.LIFECYCLE
    assert handle.state is STOPPED


def test_restart_of_running_service_raises_lifecycle_error(host):
    handle = host.add_service("svc", Echo())
    handle.start(timeout=HANG)
    with pytest.raises(errors.LifecycleError):
        handle.restart(timeout=HANG)
    assert handle.state is RUNNING


def test_restart_of_ready_service_raises_lifecycle_error(host):
    handle = host.add_service("svc", Echo())
    with pytest.raises(errors.LifecycleError):
        handle.restart(timeout=HANG)
    assert handle.state is READY


def test_restart_from_stopped_runs_again(host):
    plugin = Echo()
    handle = host.add_service("svc", plugin)
    handle.start(timeout=HANG)
    handle.stop(timeout=HANG)
    status = handle.restart(timeout=HANG)
    assert status.state is RUNNING
    assert handle.submit(event("again")).result(timeout=HANG) == "again"
    assert [name for name, _ in plugin.calls] == ["start", "stop", "start", "handle_ingress"]


def test_restart_from_failed_runs_again(host):
    handle = host.add_service("svc", Raising())
    handle.start(timeout=HANG)
    with pytest.raises(errors.DispatchFailed):
        handle.submit(event(1)).result(timeout=HANG)
    assert handle.state is FAILED
    assert handle.restart(timeout=HANG).state is RUNNING


def test_restart_counts_in_status_restarts(host):
    handle = host.add_service("svc", Echo())
    handle.start(timeout=HANG)
    handle.stop(timeout=HANG)
    handle.restart(timeout=HANG)
    assert handle.status().restarts == 1


def test_shared_instance_is_reused_across_restart(host):
    plugin = Echo()
    handle = host.add_service("svc", plugin)
    handle.start(timeout=HANG)
    handle.stop(timeout=HANG)
    handle.restart(timeout=HANG)
    handle.submit(event("x")).result(timeout=HANG)
    assert plugin.payloads == ["x"]


def test_wait_for_returns_true_once_in_state(host):
    handle = host.add_service("svc", Echo())
    handle.start(timeout=HANG)
    assert handle.wait_for(RUNNING, timeout=HANG) is True


def test_wait_for_returns_false_when_timeout_runs_out(host):
    handle = host.add_service("svc", Echo())
    assert handle.wait_for(RUNNING, timeout=0.01) is False


def test_duplicate_service_name_raises_value_error(host):
    host.add_service("svc", Echo())
    with pytest.raises(ValueError):
        host.add_service("svc", Echo())


def test_service_returns_the_handle_added_under_that_name(host):
    handle = host.add_service("svc", Echo())
    assert host.service("svc") is handle


def test_unknown_service_raises_service_not_found(host):
    with pytest.raises(errors.ServiceNotFound) as raised:
        host.service("missing")
    assert raised.value.kind is DiagnosticKind.SERVICE_NOT_FOUND


def test_submit_to_unknown_service_raises_service_not_found(host):
    with pytest.raises(errors.ServiceNotFound):
        host.submit("missing", event(1))


def test_start_all_starts_every_ready_service(host):
    first = host.add_service("first", Echo())
    second = host.add_service("second", Echo())
    host.start_all(timeout=HANG)
    assert (first.state, second.state) == (RUNNING, RUNNING)


def test_start_all_raises_naming_failed_services_after_trying_all(host):
    host.add_service("bad-a", FailingStart(RuntimeError("a")))
    good = host.add_service("good", Echo())
    host.add_service("bad-b", FailingStart(RuntimeError("b")))
    with pytest.raises(errors.ServiceFailed) as raised:
        host.start_all(timeout=HANG)
    assert sorted(raised.value.services) == ["bad-a", "bad-b"]
    assert "bad-a" in str(raised.value) and "bad-b" in str(raised.value)
    assert good.state is RUNNING


def test_start_all_leaves_non_ready_services_alone(host):
    plugin = Echo()
    stopped = host.add_service("stopped", plugin)
    stopped.stop(timeout=HANG)
    host.start_all(timeout=HANG)
    assert stopped.state is STOPPED
    assert plugin.calls == []


def test_context_manager_stops_services_on_exit():
    plugin = Echo()
    with PluginHost() as plugin_host:
        handle = plugin_host.add_service("svc", plugin)
        handle.start(timeout=HANG)
    assert handle.state is STOPPED
    assert plugin.stopped.is_set()


def test_close_stops_running_services():
    plugin_host = PluginHost()
    plugin = Echo()
    handle = plugin_host.add_service("svc", plugin)
    handle.start(timeout=HANG)
    plugin_host.close(timeout=HANG)
    assert handle.state is STOPPED
    assert [name for name, _ in plugin.calls] == ["start", "stop"]


def test_plugin_without_super_init_runs(start_service):
    class Bare(ServicePlugin):
        ingresses = Recorder.ingresses

        def __init__(self):
            self.count = 0

        def handle_ingress(self, event, ctx):
            self.count += 1
            return self.count

    handle = start_service("bare", Bare())
    assert handle.submit(event()).result(timeout=HANG) == 1


def test_close_joins_the_worker_threads():
    plugin_host = PluginHost()
    for name in ("joined-a", "joined-b"):
        plugin_host.add_service(name, Echo())
    plugin_host.start_all(timeout=HANG)
    plugin_host.close(timeout=HANG)
    alive = {thread.name for thread in threading.enumerate()}
    assert not alive & {"joined-a", "joined-b"}
