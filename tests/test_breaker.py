"""A service's circuit breaker (``ServiceConfig.breaker``): it pauses dispatch
instead of failing the service or dropping events.

Open after ``failures`` failed or timed-out events within ``window``; while
open, queued events wait (back-pressure, nothing dropped or failed for it);
after ``open_for`` one probe goes (half-open); its success closes the breaker,
its failure re-opens it for twice as long, at most ``max_open_for``.

Waits end on futures and gates; the open times are real but short, and the
tests only check lower bounds on them (a probe never goes early), which cannot
flake; the window is judged on a manual clock.
"""
from __future__ import annotations

import datetime as dt
import time

import pytest
from support.checks import assert_invariants
from support.clock import ManualClock
from support.doubles import Hold, Scripted, event
from support.timing import HANG

from plugin_service import (
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    DiagnosticKind,
    LifecycleState,
    RetryPolicy,
    ServiceConfig,
    errors,
)
from plugin_service import _breaker as breaker_module

pytestmark = pytest.mark.timeout(60)

DOWN = ValueError("downstream is down")
LONG_OPEN = 60.0  # an open breaker that never probes within a test


def _breaker_messages(handle):
    return [d.message for d in handle.status().diagnostics if d.kind is DiagnosticKind.BREAKER]


def _fail(handle, count=1):
    for _ in range(count):
        with pytest.raises(errors.DispatchFailed):
            handle.submit(event(DOWN)).result(HANG)


def _open_for(status):
    return (status.next_probe_at - status.since).total_seconds()


@pytest.fixture
def clock(monkeypatch):
    manual = ManualClock()
    monkeypatch.setattr(breaker_module, "_clock", manual)
    return manual


def test_breaker_policy_defaults_and_validation():
    assert BreakerPolicy() == BreakerPolicy(failures=5, window=30.0, open_for=1.0,
                                            max_open_for=60.0)
    assert ServiceConfig().breaker is None
    for bad in ({"failures": 0}, {"failures": 1.5}, {"window": 0}, {"open_for": -1},
                {"open_for": float("nan")}, {"max_open_for": float("inf")},
                {"open_for": 2.0, "max_open_for": 1.0}):
        with pytest.raises(ValueError):
            BreakerPolicy(**bad)
    with pytest.raises(TypeError):
        ServiceConfig(breaker="open")


def test_without_a_breaker_status_has_none(start_service):
    handle = start_service("plain", Scripted())
    assert handle.status().breaker is None
    assert handle.status().to_dict()["breaker"] is None


def test_breaker_opens_after_failures_and_the_service_stays_running(start_service):
    plugin = Scripted()
    handle = start_service("svc", plugin, fail_after=1,
                           breaker=BreakerPolicy(failures=3, open_for=LONG_OPEN))
    _fail(handle, 2)
    assert handle.status().breaker.state is BreakerState.CLOSED
    _fail(handle)
    status = handle.status()
    assert status.state is LifecycleState.RUNNING
    assert status.failure is None
    assert status.breaker.state is BreakerState.OPEN
    assert status.breaker.trips == 1
    assert _open_for(status.breaker) == pytest.approx(LONG_OPEN)
    assert status.last_error.kind is DiagnosticKind.DISPATCH_FAILED  # a transition is not one
    assert _breaker_messages(handle) == [
        "breaker closed -> open (3 failures within 30s; next probe in 60s)"]
    assert status.counters.failed == 3
    assert_invariants(status)


def test_an_open_breaker_holds_events_in_the_queue_and_producers_feel_queue_full(
        start_service):
    plugin = Scripted()
    handle = start_service("svc", plugin, queue_size=2,
                           breaker=BreakerPolicy(failures=1, open_for=LONG_OPEN))
    _fail(handle)
    held = [handle.submit(event(n)) for n in range(2)]
    with pytest.raises(errors.QueueFull):
        handle.submit(event("no room"))
    with pytest.raises(errors.QueueFull):
        handle.submit(event("no room"), block=True, timeout=0.05)
    status = handle.status()
    assert status.queue_depth == 2 and status.in_flight == 0
    assert status.counters.dropped == 0 and status.counters.failed == 1
    assert status.counters.dispatched == 1
    assert plugin.payloads == [DOWN]  # nothing handed over while open
    assert not any(future.done() for future in held)
    assert_invariants(status)
    handle.stop(drain=False, timeout=HANG)
    for future in held:
        with pytest.raises(errors.ServiceStopped):
            future.result(0)


def test_after_open_for_one_probe_goes_and_its_success_closes_the_breaker(start_service):
    plugin = Scripted()
    open_for = 0.2
    handle = start_service("svc", plugin, breaker=BreakerPolicy(failures=1, open_for=open_for))
    before = time.monotonic()  # the breaker opens after this
    _fail(handle)
    assert handle.submit(event("probe")).result(HANG) == "probe"
    assert time.monotonic() - before >= open_for  # never early
    status = handle.status()
    assert status.breaker.state is BreakerState.CLOSED
    assert status.breaker.next_probe_at is None
    assert status.breaker.trips == 1
    assert [m.split(" (")[0] for m in _breaker_messages(handle)] == [
        "breaker closed -> open", "breaker open -> half_open", "breaker half_open -> closed"]
    assert_invariants(status)


def test_a_half_open_breaker_hands_over_one_probe_and_the_rest_waits(start_service, gates):
    plugin = Scripted()
    handle = start_service("svc", plugin, breaker=BreakerPolicy(failures=1, open_for=0.05))
    _fail(handle)
    gate = gates.new()
    probe = handle.submit(event(Hold(gate)))
    behind = [handle.submit(event(n)) for n in range(3)]
    assert plugin.entered().payload is DOWN
    assert isinstance(plugin.entered().payload, Hold)  # the probe
    status = handle.status()
    assert status.breaker.state is BreakerState.HALF_OPEN
    assert status.in_flight == 1 and status.queue_depth == 3
    gate.set()
    assert probe.result(HANG) == "released"
    assert [future.result(HANG) for future in behind] == [0, 1, 2]
    assert handle.status().breaker.state is BreakerState.CLOSED


def test_a_failed_probe_reopens_for_twice_as_long_up_to_max_open_for(start_service):
    plugin = Scripted()
    handle = start_service("svc", plugin, breaker=BreakerPolicy(
        failures=1, open_for=0.05, max_open_for=0.15))
    _fail(handle)
    seen = [_open_for(handle.status().breaker)]
    for _ in range(3):
        _fail(handle)  # each one the probe of the opening before it
        status = handle.status().breaker
        assert status.state is BreakerState.OPEN
        seen.append(_open_for(status))
    assert seen == pytest.approx([0.05, 0.1, 0.15, 0.15])
    status = handle.status()
    assert status.breaker.trips == 4
    assert status.state is LifecycleState.RUNNING
    assert plugin.payloads == [DOWN] * 4
    assert_invariants(status)


def test_failures_older_than_the_window_do_not_count(start_service, clock):
    handle = start_service("svc", Scripted(), breaker=BreakerPolicy(
        failures=2, window=10.0, open_for=LONG_OPEN))
    _fail(handle)
    clock.advance(10.5)
    _fail(handle)
    assert handle.status().breaker.state is BreakerState.CLOSED
    clock.advance(9.0)
    _fail(handle)  # two within 10 s
    assert handle.status().breaker.state is BreakerState.OPEN


def test_a_retried_event_counts_one_failure_once_its_attempts_are_spent(start_service):
    plugin = Scripted()
    handle = start_service("svc", plugin, retry=RetryPolicy(max_attempts=3, backoff=0.0),
                           breaker=BreakerPolicy(failures=2, open_for=LONG_OPEN))
    _fail(handle)
    status = handle.status()
    assert status.counters.retried == 2 and len(plugin.payloads) == 3
    assert status.breaker.state is BreakerState.CLOSED
    _fail(handle)
    assert handle.status().breaker.state is BreakerState.OPEN


def test_a_timed_out_event_counts_as_a_failure_when_the_watchdog_decides_it(
        start_service, gates):
    plugin = Scripted()
    handle = start_service("svc", plugin, dispatch_timeout=0.05, fail_after=1,
                           breaker=BreakerPolicy(failures=1, open_for=LONG_OPEN))
    gate = gates.new()
    future = handle.submit(event(Hold(gate)))
    with pytest.raises(errors.DispatchTimeout):
        future.result(HANG)
    status = handle.status()  # its handler is still running
    assert status.overdue
    assert status.breaker.state is BreakerState.OPEN
    assert status.state is LifecycleState.RUNNING
    gate.set()
    assert handle.stop(timeout=HANG).state is LifecycleState.STOPPED


def test_stop_while_open_drops_queued_events_with_service_stopped_at_the_bound(
        start_service):
    plugin = Scripted()
    handle = start_service("svc", plugin, breaker=BreakerPolicy(failures=1,
                                                                open_for=LONG_OPEN))
    _fail(handle)
    queued = [handle.submit(event(n)) for n in range(2)]
    bound = 0.2
    began = time.monotonic()
    status = handle.stop(timeout=bound)
    assert time.monotonic() - began >= bound  # they waited for the breaker until then
    assert status.state is LifecycleState.STOPPED
    for future in queued:
        with pytest.raises(errors.ServiceStopped):
            future.result(HANG)
    assert status.counters.dropped == 2
    assert plugin.payloads == [DOWN]
    assert_invariants(status)


def test_stop_while_open_drains_when_the_probe_succeeds_within_the_bound(start_service):
    handle = start_service("svc", Scripted(), breaker=BreakerPolicy(failures=1,
                                                                    open_for=0.1))
    _fail(handle)
    queued = [handle.submit(event(n)) for n in range(3)]
    status = handle.stop(timeout=HANG)
    assert status.state is LifecycleState.STOPPED
    assert [future.result(0) for future in queued] == [0, 1, 2]
    assert status.breaker.state is BreakerState.CLOSED
    assert status.counters.dropped == 0


def test_stop_without_drain_while_open_drops_at_once(start_service):
    handle = start_service("svc", Scripted(), breaker=BreakerPolicy(failures=1,
                                                                    open_for=LONG_OPEN))
    _fail(handle)
    queued = handle.submit(event("x"))
    began = time.monotonic()
    assert handle.stop(drain=False, timeout=HANG).state is LifecycleState.STOPPED
    assert time.monotonic() - began < HANG
    with pytest.raises(errors.ServiceStopped):
        queued.result(0)


def test_breaker_status_exports_as_json_types(start_service):
    handle = start_service("svc", Scripted(), breaker=BreakerPolicy(failures=1,
                                                                    open_for=LONG_OPEN))
    exported = handle.status().to_dict()["breaker"]
    assert exported["state"] == "closed" and exported["trips"] == 0
    assert exported["next_probe_at"] is None
    _fail(handle)
    status = handle.status().breaker
    assert isinstance(status, BreakerStatus)
    assert status.since.tzinfo is dt.timezone.utc
    exported = status.to_dict()
    assert exported == {"state": "open", "since": status.since.isoformat(),
                        "next_probe_at": status.next_probe_at.isoformat(), "trips": 1}
    assert handle.status().to_dict()["breaker"] == exported
    breaker = [d for d in handle.status().diagnostics if d.kind is DiagnosticKind.BREAKER]
    assert breaker[0].to_dict()["kind"] == "breaker"


def test_metrics_export_the_breaker_state_of_services_that_have_one(host, start_service):
    pytest.importorskip("prometheus_client")
    from plugin_service.metrics import PluginHostCollector

    handle = start_service("svc", Scripted(), breaker=BreakerPolicy(failures=1,
                                                                    open_for=LONG_OPEN))
    start_service("plain", Scripted())
    _fail(handle)
    families = {family.name: family for family in PluginHostCollector(host).collect()}
    state = {(s.labels["service"], s.labels["state"]): s.value
             for s in families["plugin_service_service_breaker_state"].samples}
    assert state == {("svc", "closed"): 0.0, ("svc", "open"): 1.0, ("svc", "half_open"): 0.0}
    trips = [(s.labels["service"], s.value)
             for s in families["plugin_service_service_breaker_trips"].samples
             if s.name.endswith("_total")]
    assert trips == [("svc", 1.0)]
