"""Dispatch timeouts, cancel_grace, overdue handlers and the DispatchContext API."""
from __future__ import annotations

import time

import pytest
from support.checks import assert_invariants, outcome
from support.doubles import Cooperative, Hold, Recorder, Scripted, Uncooperative, event
from support.states import FAILED, RUNNING, STOPPED
from support.timing import HANG

from plugin_service import DiagnosticKind, DispatchContext, errors

TIMEOUT = 0.05


def test_handler_past_deadline_raises_dispatch_timeout(start_service):
    handle = start_service("svc", Cooperative(), dispatch_timeout=TIMEOUT, fail_after=None)
    with pytest.raises(errors.DispatchTimeout) as raised:
        handle.submit(event(1)).result(timeout=HANG)
    assert raised.value.timeout == TIMEOUT
    assert raised.value.kind is DiagnosticKind.DISPATCH_TIMEOUT
    assert isinstance(raised.value, errors.DispatchError)


def test_cooperative_handler_is_woken_by_cancellation(start_service):
    plugin = Cooperative()
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, fail_after=None)
    future = handle.submit(event(1))
    assert plugin.returned.wait(HANG)
    assert plugin.woke_cancelled == [True]
    assert plugin.contexts[0].cancelled is True
    assert isinstance(outcome(future), errors.DispatchTimeout)


def test_cooperative_timed_out_handler_leaves_service_running(start_service):
    plugin = Cooperative()
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, cancel_grace=HANG,
                           fail_after=None)
    with pytest.raises(errors.DispatchTimeout):
        handle.submit(event(1)).result(timeout=HANG)
    assert plugin.returned.wait(HANG)
    assert handle.stop(timeout=HANG).state is STOPPED
    assert handle.status().counters.timed_out == 1


def test_timeout_is_recorded_while_uncooperative_handler_still_runs(host, start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, cancel_grace=None,
                           fail_after=None)
    submitted = event(1)
    with pytest.raises(errors.DispatchTimeout):
        handle.submit(submitted).result(timeout=HANG)
    status = handle.status()
    assert not plugin.returned.is_set()
    assert (status.counters.dispatched, status.counters.timed_out) == (1, 1)
    assert status.last_error.kind is DiagnosticKind.DISPATCH_TIMEOUT
    assert status.last_error.correlation_id == submitted.correlation_id
    assert [letter.event for letter in host.dead_letters()] == [submitted]


def test_overdue_handler_is_overdue_not_in_flight(start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, cancel_grace=None,
                           fail_after=None)
    with pytest.raises(errors.DispatchTimeout):
        handle.submit(event(1)).result(timeout=HANG)
    status = handle.status()
    assert (status.overdue, status.in_flight) == (True, 0)
    assert_invariants(status)


def test_uncooperative_handler_sees_cancelled_when_it_returns(start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, cancel_grace=None,
                           fail_after=None)
    with pytest.raises(errors.DispatchTimeout):
        handle.submit(event(1)).result(timeout=HANG)
    plugin.gate.set()
    assert plugin.returned.wait(HANG)
    assert plugin.cancelled_at_return == [True]


def test_late_result_of_timed_out_handler_is_discarded(start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, cancel_grace=None,
                           fail_after=None)
    future = handle.submit(event(1))
    with pytest.raises(errors.DispatchTimeout):
        future.result(timeout=HANG)
    plugin.gate.set()
    handle.stop(timeout=HANG)
    status = handle.status()
    assert isinstance(outcome(future), errors.DispatchTimeout)
    assert (status.counters.succeeded, status.counters.timed_out) == (0, 1)
    assert (status.overdue, status.in_flight) == (False, 0)


def test_next_event_waits_for_timed_out_handler_to_return(start_service, gates):
    plugin = Scripted()
    gate = gates.new()
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, cancel_grace=None,
                           fail_after=None)
    first = handle.submit(event(Hold(gate)))
    plugin.entered()
    handle.submit(event("next"))
    with pytest.raises(errors.DispatchTimeout):
        first.result(timeout=HANG)
    status = handle.status()
    assert (status.counters.dispatched, status.queue_depth) == (1, 1)
    assert plugin.arrivals.empty()
    gate.set()
    assert plugin.entered().payload == "next"
    assert plugin.max_active == 1


def test_uncooperative_handler_past_cancel_grace_fails_service(start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, cancel_grace=TIMEOUT,
                           fail_after=None)
    submitted = event(1)
    handle.submit(submitted)
    assert handle.wait_for(FAILED, timeout=HANG)
    failure = handle.status().failure
    assert failure.kind is DiagnosticKind.SERVICE_FAILED
    assert failure.correlation_id == submitted.correlation_id
    assert not plugin.returned.is_set()


def test_timeout_tripping_fail_after_fails_service_once_handler_returns(start_service, gates):
    plugin = Uncooperative(gates.new())
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, cancel_grace=HANG * 4,
                           fail_after=1)
    submitted = event(1)
    with pytest.raises(errors.DispatchTimeout):
        handle.submit(submitted).result(timeout=HANG)
    assert handle.state is RUNNING  # README: FAILED once no handler of the life runs
    plugin.gate.set()
    assert handle.wait_for(FAILED, timeout=HANG)
    failure = handle.status().failure
    assert failure.kind is DiagnosticKind.DISPATCH_TIMEOUT
    assert failure.correlation_id == submitted.correlation_id


def test_dispatch_timeout_counts_from_handler_invocation(start_service, gates):
    plugin = Scripted()
    gate = gates.new()
    timeout = 0.2
    handle = start_service("svc", plugin, dispatch_timeout=timeout, cancel_grace=None,
                           fail_after=None)
    handle.submit(event(Hold(gate)))
    plugin.entered()
    queued = handle.submit(event("queued"))
    released_at = time.monotonic()
    gate.set()
    outcome(queued)
    assert plugin.contexts[1].deadline >= released_at + timeout


# ------------------------------------------------------------ DispatchContext
class Probe(Recorder):
    """Records what the context says at handler entry and a short ``wait``."""

    def behave(self, event, ctx):
        self.seen = {
            "entered": time.monotonic(),
            "cancelled": ctx.cancelled,
            "deadline": ctx.deadline,
            "remaining": ctx.remaining(),
            "wait": ctx.wait(0.01),
        }
        return event.payload


class CancelledProbe(Recorder):
    """Waits until cancelled, then records what the context says."""

    def behave(self, event, ctx):
        began = time.monotonic()
        self.seen = {"woke": ctx.wait(60.0), "waited": time.monotonic() - began}
        self.seen["remaining"] = ctx.remaining()
        began = time.monotonic()
        self.seen["again"] = ctx.wait(60.0)
        self.seen["waited again"] = time.monotonic() - began
        self.returned = True
        return None


def test_ctx_is_a_dispatch_context_carrying_the_event(start_service):
    plugin = Recorder()
    handle = start_service("svc", plugin)
    submitted = event("x")
    handle.submit(submitted).result(timeout=HANG)
    ctx = plugin.contexts[0]
    assert isinstance(ctx, DispatchContext)
    assert ctx.event == submitted


def test_ctx_is_not_cancelled_before_deadline(start_service):
    plugin = Probe()
    handle = start_service("svc", plugin, dispatch_timeout=60.0)
    handle.submit(event(1)).result(timeout=HANG)
    assert plugin.seen["cancelled"] is False


def test_ctx_deadline_is_invocation_time_plus_dispatch_timeout(start_service):
    plugin = Probe()
    handle = start_service("svc", plugin, dispatch_timeout=60.0)
    submitted_at = time.monotonic()
    handle.submit(event(1)).result(timeout=HANG)
    deadline = plugin.seen["deadline"]
    assert submitted_at + 60.0 <= deadline <= plugin.seen["entered"] + 60.0


def test_ctx_remaining_is_positive_and_at_most_the_timeout(start_service):
    plugin = Probe()
    handle = start_service("svc", plugin, dispatch_timeout=60.0)
    handle.submit(event(1)).result(timeout=HANG)
    assert 0.0 < plugin.seen["remaining"] <= 60.0


def test_ctx_without_dispatch_timeout_has_no_deadline(start_service):
    plugin = Probe()
    handle = start_service("svc", plugin, dispatch_timeout=None)
    handle.submit(event(1)).result(timeout=HANG)
    assert plugin.seen["deadline"] is None
    assert plugin.seen["remaining"] is None


def test_ctx_wait_returns_false_after_sleeping_when_not_cancelled(start_service):
    plugin = Probe()
    handle = start_service("svc", plugin, dispatch_timeout=60.0)
    handle.submit(event(1)).result(timeout=HANG)
    assert plugin.seen["wait"] is False


def test_ctx_wait_returns_true_early_once_cancelled(start_service):
    plugin = CancelledProbe()
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, fail_after=None)
    handle.submit(event(1))
    handle.stop(timeout=HANG)
    assert plugin.seen["woke"] is True
    assert plugin.seen["waited"] < HANG


def test_ctx_wait_returns_true_at_once_when_already_cancelled(start_service):
    plugin = CancelledProbe()
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, fail_after=None)
    handle.submit(event(1))
    handle.stop(timeout=HANG)
    assert plugin.seen["again"] is True
    assert plugin.seen["waited again"] < HANG


def test_ctx_remaining_is_zero_after_deadline(start_service):
    plugin = CancelledProbe()
    handle = start_service("svc", plugin, dispatch_timeout=TIMEOUT, fail_after=None)
    handle.submit(event(1))
    handle.stop(timeout=HANG)
    assert plugin.seen["remaining"] == 0.0
