"""Tools and services cannot starve each other (issue 4).

Each test blocks one side on a gate and proves the other side completes while the
gate is still closed; HANG only bounds a hang, nothing here measures time.
"""
from __future__ import annotations

import pytest
from support.doubles import EchoService, GatedService, event
from support.timing import HANG
from support.tools import Upper, raising_tool

from plugin_service import ServiceConfig, errors


def test_blocked_service_with_full_queue_does_not_delay_tool_calls(make_host, make_gate):
    host = make_host(tool_workers=1)
    gate = make_gate()
    service = host.add_service("svc", GatedService(gate),
                               ServiceConfig(queue_size=1, dispatch_timeout=None))
    service.start(timeout=HANG)
    in_handler = service.submit(event("first"))
    assert gate.wait_entered(1)
    queued = service.submit(event("second"))
    with pytest.raises(errors.QueueFull):
        service.submit(event("third"))
    host.add_tool("upper", Upper())

    assert host.call_tool("upper", "tool", timeout=HANG) == "TOOL"
    assert not in_handler.done() and not queued.done()  # the service is still stuck
    gate.release()
    assert in_handler.result(timeout=HANG) == "first"
    assert queued.result(timeout=HANG) == "second"


def test_saturated_tool_pool_does_not_delay_service_dispatch(make_host, make_gate):
    host = make_host(tool_workers=2)
    gate = make_gate()
    host.add_tool("slow", gate)
    running = [host.submit_tool("slow", i) for i in range(2)]
    assert gate.wait_entered(2)
    waiting = host.submit_tool("slow", 2)  # no pool thread left for it
    service = host.add_service("svc", EchoService())
    service.start(timeout=HANG)

    assert service.submit(event("hi")).result(timeout=HANG) == ("echo", "hi")
    assert gate.entered == 2 and not any(f.done() for f in running + [waiting])
    gate.release()
    assert [f.result(timeout=HANG) for f in running + [waiting]] == [0, 1, 2]


def test_tool_calls_leave_service_counters_unchanged(make_host):
    host = make_host()
    service = host.add_service("svc", EchoService())
    service.start(timeout=HANG)
    service.submit(event(1)).result(timeout=HANG)
    before = service.status().counters
    host.add_tool("upper", Upper())
    host.add_tool("bad", raising_tool("no"))

    host.call_tool("upper", "x", timeout=HANG)
    with pytest.raises(errors.ToolFailed):
        host.call_tool("bad", "y", timeout=HANG)

    assert service.status().counters == before
    assert service.status().queue_depth == 0
