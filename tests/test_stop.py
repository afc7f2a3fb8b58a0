"""stop(): STOPPING at once, drain or drop, the stop bound, plugin.stop()."""
from __future__ import annotations

import time

import pytest
from support.checks import assert_invariants, outcome
from support.doubles import (
    Blocking,
    Cooperative,
    Echo,
    FailingStop,
    Scripted,
    Uncooperative,
    event,
)
from support.states import FAILED, STOPPED, STOPPING
from support.timing import HANG

from plugin_service import DiagnosticKind, errors


@pytest.fixture
def busy(start_service, gates):
    """A RUNNING service with one handler blocked on its gate and two queued events."""
    plugin = Blocking(gates.new())
    handle = start_service("svc", plugin)
    in_flight = handle.submit(event("in flight"))
    plugin.entered()
    queued = [handle.submit(event("a")), handle.submit(event("b"))]
    return handle, plugin, in_flight, queued


def test_stop_returns_stopped_status_after_plugin_stop_on_worker(start_service):
    plugin = Echo()
    handle = start_service("svc", plugin)
    status = handle.stop(timeout=HANG)
    assert status.state is STOPPED
    assert plugin.calls[-1] == ("stop", "svc")


def test_stop_turns_service_stopping_at_once(busy, background):
    handle, plugin, _, _ = busy
    stopping = background(handle.stop, timeout=HANG)
    assert handle.wait_for(STOPPING, timeout=HANG)
    assert not plugin.stopped.is_set()
    plugin.gate.set()
    assert stopping.result(timeout=HANG).state is STOPPED


def test_stop_with_drain_delivers_queued_events(busy, background):
    handle, plugin, in_flight, queued = busy
    stopping = background(handle.stop, drain=True, timeout=HANG)
    assert handle.wait_for(STOPPING, timeout=HANG)
    plugin.gate.set()
    assert stopping.result(timeout=HANG).state is STOPPED
    assert [f.result(timeout=0) for f in [in_flight] + queued] == ["in flight", "a", "b"]
    assert plugin.payloads == ["in flight", "a", "b"]


def test_stop_without_drain_drops_queued_events_with_service_stopped(busy, background):
    handle, plugin, in_flight, queued = busy
    stopping = background(handle.stop, drain=False, timeout=HANG)
    errors_seen = [outcome(future) for future in queued]  # before the handler returns
    plugin.gate.set()
    assert stopping.result(timeout=HANG).state is STOPPED
    assert all(isinstance(error, errors.ServiceStopped) for error in errors_seen)
    assert in_flight.result(timeout=0) == "in flight"
    assert plugin.payloads == ["in flight"]


def test_dropped_events_are_counted(busy):
    handle, plugin, _, _ = busy
    plugin.gate.set()
    handle.stop(drain=False, timeout=HANG)
    counters = handle.status().counters
    assert (counters.dropped, counters.succeeded) == (2, 1)


def test_dropped_events_become_dead_letters_with_service_stopped(host, busy):
    handle, plugin, _, queued = busy
    plugin.gate.set()
    handle.stop(drain=False, timeout=HANG)
    letters = host.dead_letters()
    assert [letter.event for letter in letters] == [f.event for f in queued]
    assert {letter.diagnostic.kind for letter in letters} == {DiagnosticKind.SERVICE_STOPPED}
    assert {letter.service for letter in letters} == {"svc"}


def test_stop_bound_drops_queued_events(start_service):
    plugin = Scripted()
    handle = start_service("svc", plugin, cancel_grace=HANG)
    handle.submit(event("wait"))
    plugin.entered()
    queued = handle.submit(event("queued"))
    assert handle.stop(drain=True, timeout=0.05).state is STOPPED
    assert isinstance(outcome(queued), errors.ServiceStopped)
    assert plugin.payloads == ["wait"]


def test_handler_running_at_stop_bound_is_cancelled(start_service):
    plugin = Cooperative()
    handle = start_service("svc", plugin, cancel_grace=HANG)
    handle.submit(event(1))
    plugin.entered()
    handle.stop(timeout=0.05)
    assert plugin.woke_cancelled == [True]


def test_cancelled_handler_returning_within_grace_keeps_its_result(start_service):
    plugin = Cooperative()
    handle = start_service("svc", plugin, cancel_grace=HANG)
    future = handle.submit(event(1))
    plugin.entered()
    assert handle.stop(timeout=0.05).state is STOPPED
    assert future.result(timeout=0) == "cancelled"


def test_stop_timeout_bounds_stop_when_no_timeout_is_given(start_service):
    plugin = Cooperative()
    handle = start_service("svc", plugin, stop_timeout=0.05, cancel_grace=HANG)
    handle.submit(event(1))
    plugin.entered()
    queued = handle.submit(event(2))
    began = time.monotonic()
    assert handle.stop().state is STOPPED
    assert time.monotonic() - began < HANG
    assert isinstance(outcome(queued), errors.ServiceStopped)


def test_uncooperative_handler_at_stop_bound_fails_service_after_grace(start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, cancel_grace=0.05)
    handle.submit(event(1))
    plugin.entered()
    began = time.monotonic()
    with pytest.raises(errors.ServiceFailed):
        handle.stop(timeout=0.05)
    assert time.monotonic() - began < HANG
    assert handle.state is FAILED
    assert handle.status().failure.kind is DiagnosticKind.SERVICE_FAILED
    assert not plugin.returned.is_set()


def test_plugin_stop_is_not_called_under_a_stuck_handler(start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, cancel_grace=0.05)
    handle.submit(event(1))
    plugin.entered()
    with pytest.raises(errors.ServiceFailed):
        handle.stop(timeout=0.05)
    assert not plugin.stopped.is_set()


def test_plugin_stop_raising_fails_service_and_stop_raises_service_failed(start_service):
    handle = start_service("svc", FailingStop(RuntimeError("flush failed")))
    with pytest.raises(errors.ServiceFailed) as raised:
        handle.stop(timeout=HANG)
    assert raised.value.state is FAILED
    assert handle.state is FAILED
    failure = handle.status().failure
    assert failure.kind is DiagnosticKind.SERVICE_FAILED
    assert "flush failed" in failure.message


def test_handler_timing_out_while_stopping_is_held_to_cancel_grace(start_service, gates,
                                                                   background):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, dispatch_timeout=1.0, cancel_grace=0.05,
                           stop_timeout=None, fail_after=None)
    handle.submit(event(1))
    plugin.entered()
    stopping = background(handle.stop)
    assert handle.wait_for(STOPPING, timeout=HANG)
    # The deadline passes while STOPPING; cancel_grace later the service must be FAILED.
    assert handle.wait_for(FAILED, timeout=3.0)
    with pytest.raises(errors.ServiceFailed):
        stopping.result(timeout=HANG)


def test_handler_stuck_past_stop_grace_counts_as_timed_out(start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, cancel_grace=0.05)
    future = handle.submit(event(1))
    plugin.entered()
    with pytest.raises(errors.ServiceFailed):
        handle.stop(timeout=0.05)
    assert isinstance(outcome(future), errors.DispatchTimeout)
    status = handle.status()
    assert status.counters.timed_out == 1
    assert_invariants(status)


class BlockingStop(Echo):
    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def stop(self):
        super().stop()
        self.gate.wait()


def test_plugin_stop_overrunning_the_stop_bound_fails_service(start_service, gates):
    handle = start_service("svc", BlockingStop(gates.new()), cancel_grace=0.05)
    began = time.monotonic()
    with pytest.raises(errors.ServiceFailed):
        handle.stop(timeout=0.05)
    assert time.monotonic() - began < HANG
    assert handle.state is FAILED
    assert handle.status().failure.kind is DiagnosticKind.SERVICE_FAILED
