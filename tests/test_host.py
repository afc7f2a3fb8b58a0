"""The host as a whole: status, close, the with block, thread cleanup (issue 4)."""
from __future__ import annotations

import json
import threading

import pytest
from support.doubles import EchoService, FailingService, GatedService, event
from support.timing import HANG, SHORT
from support.tools import Upper, raising_tool

from plugin_service import (
    HostStatus,
    LifecycleState,
    PluginHost,
    ServiceConfig,
    ServiceStatus,
    ToolStatus,
    errors,
)


def running_service(host, name="svc", plugin=None, **config):
    handle = host.add_service(name, plugin if plugin is not None else EchoService(),
                              ServiceConfig(**config))
    handle.start(timeout=HANG)
    return handle


# ------------------------------------------------------------------ status


def test_status_is_a_host_status_of_services_and_tools(make_host):
    host = make_host()
    running_service(host, "svc")
    host.add_tool("upper", Upper())

    status = host.status()

    assert isinstance(status, HostStatus)
    assert list(status.services) == ["svc"]
    assert list(status.tools) == ["upper"]
    assert isinstance(status.services["svc"], ServiceStatus)
    assert isinstance(status.tools["upper"], ToolStatus)


def test_status_to_dict_has_services_and_tools_and_dumps_to_json(make_host):
    host = make_host()
    running_service(host, "svc").submit(event(1)).result(timeout=HANG)
    host.add_tool("bad", raising_tool("no"), max_concurrency=2)
    with pytest.raises(errors.ToolFailed):
        host.call_tool("bad", 1)

    as_dict = json.loads(json.dumps(host.status().to_dict()))

    assert set(as_dict) == {"services", "tools", "forked", "sources",
                            "listener_backlog_dropped", "dead_letter_sink"}
    assert as_dict["sources"] == {}
    assert as_dict["forked"] is False
    assert as_dict["services"]["svc"]["state"] == "running"
    assert as_dict["services"]["svc"]["counters"]["succeeded"] == 1
    tool = as_dict["tools"]["bad"]
    assert tool["name"] == "bad"
    assert tool["max_concurrency"] == 2
    assert tool["in_flight"] == 0
    assert tool["counters"] == {"calls": 1, "succeeded": 0, "failed": 1,
                                "timed_out": 0, "rejected": 0, "dropped": 0}
    assert (tool["overdue"], tool["abandoned"]) == (0, 0)
    assert tool["last_error"]["kind"] == "tool_failed"


def test_empty_host_status_to_dict_is_three_empty_maps_not_forked(make_host):
    assert make_host().status().to_dict() == {"services": {}, "tools": {}, "forked": False,
                                              "sources": {}, "listener_backlog_dropped": 0,
                                              "dead_letter_sink": None}


# ------------------------------------------------------------------- close


def test_close_stops_running_services(make_host):
    host = make_host()
    service = running_service(host)

    host.close(timeout=HANG)

    assert service.state is LifecycleState.STOPPED


def test_close_drains_queued_service_events(make_host, make_gate):
    host = make_host()
    gate = make_gate()
    service = running_service(host, plugin=GatedService(gate), dispatch_timeout=None)
    futures = [service.submit(event(i)) for i in range(3)]
    assert gate.wait_entered(1)
    closer = threading.Thread(target=host.close, kwargs={"timeout": HANG})
    closer.start()
    try:
        assert service.wait_for(LifecycleState.STOPPING, HANG)
    finally:
        gate.release()
        closer.join(HANG)

    assert not closer.is_alive()
    assert [f.result(timeout=0) for f in futures] == [0, 1, 2]
    assert service.state is LifecycleState.STOPPED


def test_close_is_bounded_by_its_timeout_when_a_handler_is_stuck(make_host, make_gate):
    host = make_host()
    gate = make_gate()
    service = running_service(host, plugin=GatedService(gate),
                              dispatch_timeout=None, cancel_grace=SHORT)
    stuck = service.submit(event("stuck"))
    assert gate.wait_entered(1)
    closer = threading.Thread(target=host.close, kwargs={"timeout": SHORT})
    closer.start()
    closer.join(HANG)

    assert not closer.is_alive()  # close returned while the handler still blocks
    assert not gate.is_released
    assert isinstance(stuck.exception(timeout=HANG), errors.PluginServiceError)


def test_call_tool_after_close_raises_host_closed(make_host):
    host = make_host()
    host.add_tool("upper", Upper())
    host.call_tool("upper", "warm up")

    host.close(timeout=HANG)

    with pytest.raises(errors.HostClosed):
        host.call_tool("upper", "x")


def test_service_submit_after_close_raises_service_stopped(make_host):
    host = make_host()
    service = running_service(host)

    host.close(timeout=HANG)

    with pytest.raises(errors.ServiceStopped) as caught:
        service.submit(event(1))
    assert caught.value.state is LifecycleState.STOPPED


def test_host_submit_after_close_raises_service_stopped(make_host):
    host = make_host()
    running_service(host, "svc")

    host.close(timeout=HANG)

    with pytest.raises(errors.ServiceStopped):
        host.submit("svc", event(1))


def test_failed_service_stays_failed_after_close_and_raises_service_failed(make_host):
    host = make_host()
    service = running_service(host, plugin=FailingService(), fail_after=1)
    assert isinstance(service.submit(event(1)).exception(timeout=HANG),
                      errors.DispatchFailed)
    assert service.wait_for(LifecycleState.FAILED, HANG)

    host.close(timeout=HANG)

    assert service.state is LifecycleState.FAILED
    with pytest.raises(errors.ServiceFailed):
        service.submit(event(2))


def test_close_is_idempotent(make_host):
    host = make_host()
    service = running_service(host)
    host.add_tool("upper", Upper())
    host.close(timeout=HANG)

    host.close(timeout=HANG)
    host.close()

    assert service.state is LifecycleState.STOPPED
    with pytest.raises(errors.HostClosed):
        host.call_tool("upper", "x")


def test_with_block_closes_the_host():
    with PluginHost() as host:
        service = running_service(host)
        host.add_tool("upper", Upper())
        assert host.call_tool("upper", "x") == "X"

    assert service.state is LifecycleState.STOPPED
    with pytest.raises(errors.HostClosed):
        host.call_tool("upper", "x")


def test_with_block_closes_the_host_when_its_body_raises():
    class Oops(Exception):
        pass

    with pytest.raises(Oops):
        with PluginHost() as host:
            service = running_service(host)
            raise Oops()

    assert service.state is LifecycleState.STOPPED


def test_no_thread_the_host_started_is_alive_after_close():
    before = set(threading.enumerate())
    host = PluginHost(tool_workers=3)
    try:
        service = running_service(host, "svc", dispatch_timeout=HANG)  # arms the watchdog
        assert service.submit(event(1)).result(timeout=HANG) == ("echo", 1)
        together = threading.Barrier(3, timeout=HANG)
        host.add_tool("meet", lambda request, ctx: together.wait() >= 0)
        calls = [host.submit_tool("meet", i, timeout=HANG) for i in range(3)]
        assert [f.result(timeout=HANG) for f in calls] == [True] * 3
        started = [t for t in threading.enumerate() if t not in before]
        assert len(started) >= 5  # 3 pool threads, the worker, the watchdog
    finally:
        host.close(timeout=HANG)

    alive = [t for t in threading.enumerate() if t not in before]
    assert alive == []
    assert not any(t.is_alive() for t in started)
