"""A tool's circuit breaker (``add_tool(..., breaker=BreakerPolicy(...))``):
calls fail fast with ``ToolUnavailable`` while it is open; once ``open_for``
has passed, one probe call goes (half-open) while the others still fail fast.

The breaker's time is a manual clock, so every step is decided by the test.
"""
from __future__ import annotations

import threading

import pytest
from support.clock import ManualClock
from support.timing import HANG, STARTS_WITHIN

from plugin_service import BreakerPolicy, BreakerState, DiagnosticKind, ToolStatus, errors
from plugin_service import _breaker as breaker_module

pytestmark = pytest.mark.timeout(60)

OPEN_FOR = 10.0


class Flaky:
    """A tool: ``"fail"`` raises, a ``threading.Event`` blocks until set (after
    setting ``entered``), anything else is returned."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()

    def __call__(self, request, ctx):
        self.calls += 1
        if request == "fail":
            raise RuntimeError("dependency down")
        if isinstance(request, threading.Event):
            self.entered.set()
            request.wait(HANG)
        return request


@pytest.fixture
def clock(monkeypatch):
    manual = ManualClock()
    monkeypatch.setattr(breaker_module, "_clock", manual)
    return manual


@pytest.fixture
def flaky(host, clock):
    tool = Flaky()
    host.add_tool("flaky", tool, breaker=BreakerPolicy(failures=2, open_for=OPEN_FOR,
                                                       max_open_for=25.0))
    return tool


def _trip(host):
    for _ in range(2):
        with pytest.raises(errors.ToolFailed):
            host.call_tool("flaky", "fail")


def _accounts(status: ToolStatus) -> None:
    c = status.counters
    assert c.calls == c.succeeded + c.failed + c.timed_out + c.dropped + status.in_flight


def test_a_tool_without_a_breaker_reports_none(host):
    host.add_tool("plain", lambda request, ctx: request)
    assert host.status().tools["plain"].breaker is None


def test_add_tool_refuses_a_breaker_that_is_no_policy(host):
    with pytest.raises(TypeError):
        host.add_tool("bad", lambda request, ctx: request, breaker=5)
    assert "bad" not in host.status().tools


def test_an_open_tool_breaker_fails_calls_fast_with_tool_unavailable(host, flaky):
    _trip(host)
    status = host.status().tools["flaky"]
    assert status.breaker.state is BreakerState.OPEN and status.breaker.trips == 1
    with pytest.raises(errors.ToolUnavailable) as caught:
        host.call_tool("flaky", "x")
    error = caught.value
    assert isinstance(error, errors.ToolError)
    assert error.kind is DiagnosticKind.TOOL_UNAVAILABLE
    assert error.name == "flaky" and error.service == "flaky"
    assert error.next_probe_at == status.breaker.next_probe_at
    assert flaky.calls == 2  # the tool was not called
    status = host.status().tools["flaky"]
    assert status.counters.rejected == 1 and status.counters.calls == 2
    assert status.last_error.kind is DiagnosticKind.TOOL_UNAVAILABLE
    _accounts(status)


def test_a_half_open_tool_breaker_lets_one_probe_through_and_its_success_closes_it(
        host, flaky, clock):
    _trip(host)
    clock.advance(OPEN_FOR)
    release = threading.Event()
    try:
        probe = host.submit_tool("flaky", release)
        assert flaky.entered.wait(HANG)
        status = host.status().tools["flaky"]
        assert status.breaker.state is BreakerState.HALF_OPEN
        with pytest.raises(errors.ToolUnavailable) as caught:  # the probe is out
            host.call_tool("flaky", "x")
        assert caught.value.next_probe_at is None
    finally:
        release.set()
    assert probe.result(HANG) is release
    status = host.status().tools["flaky"]
    assert status.breaker.state is BreakerState.CLOSED
    assert host.call_tool("flaky", "x") == "x"
    status = host.status().tools["flaky"]
    assert status.counters.rejected == 1 and status.counters.succeeded == 2
    _accounts(status)


def test_a_failed_tool_probe_reopens_for_twice_as_long_up_to_max_open_for(
        host, flaky, clock):
    _trip(host)
    seen = []
    for _ in range(3):
        breaker = host.status().tools["flaky"].breaker
        seen.append((breaker.next_probe_at - breaker.since).total_seconds())
        clock.advance(seen[-1])
        with pytest.raises(errors.ToolFailed):
            host.call_tool("flaky", "fail")  # the probe
    breaker = host.status().tools["flaky"].breaker
    seen.append((breaker.next_probe_at - breaker.since).total_seconds())
    assert seen == pytest.approx([10.0, 20.0, 25.0, 25.0])
    assert breaker.trips == 4


def test_a_tool_call_that_timed_out_while_running_counts_as_a_failure(host, clock):
    tool = Flaky()
    host.add_tool("slow", tool, timeout=STARTS_WITHIN,
                  breaker=BreakerPolicy(failures=1, open_for=OPEN_FOR))
    release = threading.Event()
    try:
        with pytest.raises(errors.ToolTimeout):
            host.call_tool("slow", release)
        assert tool.entered.is_set()
        assert host.status().tools["slow"].breaker.state is BreakerState.OPEN
        with pytest.raises(errors.ToolUnavailable):
            host.call_tool("slow", "x")
    finally:
        release.set()


def test_tool_breaker_metrics_export_its_state(host, flaky):
    pytest.importorskip("prometheus_client")
    from plugin_service.metrics import PluginHostCollector

    _trip(host)
    families = {family.name: family for family in PluginHostCollector(host).collect()}
    samples = {sample.labels["state"]: sample.value
               for sample in families["plugin_service_tool_breaker_state"].samples}
    assert samples == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
    trips = [s for s in families["plugin_service_tool_breaker_trips"].samples
             if s.name.endswith("_total")]
    assert [s.value for s in trips] == [1.0]
