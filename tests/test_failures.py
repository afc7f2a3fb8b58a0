"""Handler failures, fail_after, and the restart policy."""
from __future__ import annotations

import pytest
from support.checks import outcome
from support.doubles import Echo, Factory, Hold, Raising, Scripted, event
from support.states import FAILED, RUNNING
from support.timing import HANG

from plugin_service import DiagnosticKind, RestartPolicy, ServiceConfig, errors


def restart_policy(**overrides):
    settings = dict(max_restarts=3, window=60.0, backoff=0.0)
    settings.update(overrides)
    return RestartPolicy(**settings)


def failing_start_factory(*failing):
    """A factory of Scripted plugins whose start() raises for the numbered builds."""

    def make():
        number = len(factory.built) + 1
        plugin = Scripted()
        if number in failing:
            def start():
                raise RuntimeError("start %d failed: db down" % number)
            plugin.start = start
        return plugin

    factory = Factory(make)
    return factory


# ------------------------------------------------------------------ failures
def test_handler_exception_resolves_future_with_dispatch_failed(start_service):
    plugin = Raising()
    handle = start_service("svc", plugin)
    with pytest.raises(errors.DispatchFailed) as raised:
        handle.submit(event(1)).result(timeout=HANG)
    assert raised.value.__cause__ is plugin.raised[0]
    assert raised.value.kind is DiagnosticKind.DISPATCH_FAILED
    assert isinstance(raised.value, errors.DispatchError)


def test_single_failure_fails_service_by_default(start_service):
    handle = start_service("svc", Raising())
    with pytest.raises(errors.DispatchFailed):
        handle.submit(event(1)).result(timeout=HANG)
    assert handle.state is FAILED  # recorded before the future resolved


def test_failure_diagnostic_is_that_of_the_event_that_tripped_fail_after(start_service):
    handle = start_service("svc", Raising(lambda e: KeyError("missing row")))
    submitted = event(1)
    with pytest.raises(errors.DispatchFailed):
        handle.submit(submitted).result(timeout=HANG)
    failure = handle.status().failure
    assert failure.kind is DiagnosticKind.DISPATCH_FAILED
    assert failure.correlation_id == submitted.correlation_id
    assert "missing row" in failure.message


def test_failure_is_none_while_running(start_service):
    handle = start_service("svc", Echo())
    assert handle.status().failure is None


def test_fail_after_counts_consecutive_failures(start_service):
    handle = start_service("svc", Raising(), fail_after=3)
    for n in range(2):
        with pytest.raises(errors.DispatchFailed):
            handle.submit(event(n)).result(timeout=HANG)
    assert handle.state is RUNNING
    with pytest.raises(errors.DispatchFailed):
        handle.submit(event(2)).result(timeout=HANG)
    assert handle.state is FAILED


def test_success_resets_consecutive_failures(start_service):
    handle = start_service("svc", Scripted(), fail_after=2)
    for payload in (ValueError("a"), "ok", ValueError("b")):
        outcome(handle.submit(event(payload)))
    assert handle.state is RUNNING


def test_timeouts_and_failures_both_count_toward_fail_after(start_service):
    handle = start_service("svc", Scripted(), fail_after=2, dispatch_timeout=0.3,
                           cancel_grace=HANG * 4)
    timed_out = handle.submit(event("wait"))
    failed = handle.submit(event(ValueError("b")))
    assert isinstance(outcome(timed_out), errors.DispatchTimeout)
    assert isinstance(outcome(failed), errors.DispatchFailed)
    assert handle.state is FAILED
    assert handle.status().failure.kind is DiagnosticKind.DISPATCH_FAILED


def test_fail_after_none_isolates_failures_per_event(start_service):
    handle = start_service("svc", Scripted(), fail_after=None)
    for n in range(10):
        with pytest.raises(errors.DispatchFailed):
            handle.submit(event(ValueError(n))).result(timeout=HANG)
    assert handle.state is RUNNING
    assert handle.submit(event("still serving")).result(timeout=HANG) == "still serving"
    assert handle.status().counters.failed == 10


def test_failed_service_without_restart_drops_queued_events_with_service_failed(
        host, start_service, gates):
    plugin = Scripted()
    handle = start_service("svc", plugin)
    hold = Hold(gates.new(), raises=ValueError("boom"))
    tripping = handle.submit(event(hold))
    plugin.entered()
    queued = handle.submit(event("queued"))
    hold.gate.set()
    assert isinstance(outcome(tripping), errors.DispatchFailed)
    assert isinstance(outcome(queued), errors.ServiceFailed)
    assert handle.status().counters.dropped == 1
    assert plugin.payloads == [hold]
    letters = [(letter.event.payload, letter.diagnostic.kind) for letter in host.dead_letters()]
    assert letters == [(hold, DiagnosticKind.DISPATCH_FAILED),
                       ("queued", DiagnosticKind.SERVICE_FAILED)]


# ------------------------------------------------------------------ restarts
def test_restart_policy_restarts_failed_service(host):
    handle = host.add_service("svc", Factory(Scripted),
                              ServiceConfig(restart=restart_policy()))
    handle.start(timeout=HANG)
    with pytest.raises(errors.DispatchFailed):
        handle.submit(event(ValueError("x"))).result(timeout=HANG)
    assert handle.wait_for(RUNNING, timeout=HANG)
    assert handle.status().restarts == 1
    assert handle.submit(event("after")).result(timeout=HANG) == "after"


def test_automatic_restart_builds_fresh_instance(host):
    factory = Factory(Scripted)
    handle = host.add_service("svc", factory, ServiceConfig(restart=restart_policy()))
    handle.start(timeout=HANG)
    outcome(handle.submit(event(ValueError("x"))))
    assert handle.wait_for(RUNNING, timeout=HANG)
    handle.submit(event("after")).result(timeout=HANG)
    assert len(factory.built) == 2
    assert [plugin.payloads[-1] for plugin in factory.built][1] == "after"
    assert "after" not in factory.built[0].payloads


def test_failure_is_cleared_once_running_again(host):
    handle = host.add_service("svc", Factory(Scripted), ServiceConfig(restart=restart_policy()))
    handle.start(timeout=HANG)
    outcome(handle.submit(event(ValueError("x"))))
    assert handle.wait_for(RUNNING, timeout=HANG)
    assert handle.status().failure is None


def test_queued_events_wait_for_restart_instead_of_being_dropped(host, gates):
    factory = Factory(Scripted)
    handle = host.add_service("svc", factory, ServiceConfig(restart=restart_policy()))
    handle.start(timeout=HANG)
    hold = Hold(gates.new(), raises=ValueError("boom"))
    tripping = handle.submit(event(hold))
    factory.built[0].entered()
    queued = [handle.submit(event("a")), handle.submit(event("b"))]
    hold.gate.set()
    assert isinstance(outcome(tripping), errors.DispatchFailed)
    assert [future.result(timeout=HANG) for future in queued] == ["a", "b"]
    assert factory.built[1].payloads == ["a", "b"]
    assert handle.status().counters.dropped == 0


def test_restarts_end_after_max_restarts_and_service_stays_failed(host, gates):
    factory = Factory(Scripted)
    handle = host.add_service("svc", factory, ServiceConfig(restart=restart_policy(max_restarts=2)))
    handle.start(timeout=HANG)
    for n in range(2):
        outcome(handle.submit(event(ValueError(n))))
        assert handle.wait_for(RUNNING, timeout=HANG)
    hold = Hold(gates.new(), raises=ValueError("third"))
    handle.submit(event(hold))
    factory.built[2].entered()
    queued = handle.submit(event("queued"))
    hold.gate.set()
    # Dropping the queued event shows that no restart follows.
    assert isinstance(outcome(queued), errors.ServiceFailed)
    assert handle.state is FAILED
    assert handle.status().restarts == 2
    assert len(factory.built) == 3


def test_restarts_older_than_window_no_longer_count(host, gates):
    factory = Factory(Scripted)
    policy = restart_policy(max_restarts=1, window=0.05)
    handle = host.add_service("svc", factory, ServiceConfig(restart=policy))
    handle.start(timeout=HANG)
    outcome(handle.submit(event(ValueError("first"))))
    assert handle.wait_for(RUNNING, timeout=HANG)
    # The second failure comes more than `window` after the first restart.
    late = Hold(gates.new(), raises=ValueError("second"), seconds=0.1)
    outcome(handle.submit(event(late)))
    assert handle.wait_for(RUNNING, timeout=HANG)
    assert handle.status().restarts == 2


def test_failed_start_is_reported_and_not_restarted(host):
    factory = failing_start_factory(1)
    handle = host.add_service("svc", factory, ServiceConfig(restart=restart_policy(backoff=0.0)))
    with pytest.raises(errors.ServiceFailed):
        handle.start(timeout=HANG)
    assert handle.wait_for(RUNNING, timeout=0.3) is False
    assert handle.status().restarts == 0
    assert len(factory.built) == 1


def test_restart_that_fails_to_start_uses_a_policy_restart(host, gates):
    factory = failing_start_factory(2)
    handle = host.add_service("svc", factory, ServiceConfig(restart=restart_policy(max_restarts=1)))
    handle.start(timeout=HANG)
    hold = Hold(gates.new(), raises=ValueError("boom"))
    handle.submit(event(hold))
    factory.built[0].entered()
    queued = handle.submit(event("queued"))
    hold.gate.set()
    assert isinstance(outcome(queued), errors.ServiceFailed)
    assert handle.state is FAILED
    assert handle.status().restarts == 1
    assert len(factory.built) == 2


def test_restart_that_fails_to_start_is_followed_by_another_within_budget(host, gates):
    factory = failing_start_factory(2)
    handle = host.add_service("svc", factory, ServiceConfig(restart=restart_policy(max_restarts=2)))
    handle.start(timeout=HANG)
    hold = Hold(gates.new(), raises=ValueError("boom"))
    handle.submit(event(hold))
    factory.built[0].entered()
    queued = handle.submit(event("queued"))
    hold.gate.set()
    assert queued.result(timeout=HANG) == "queued"
    assert handle.status().restarts == 2
    assert factory.built[2].payloads == ["queued"]


def test_manual_restarts_count_in_restarts_but_not_against_max_restarts(host):
    handle = host.add_service("svc", Factory(Scripted),
                              ServiceConfig(restart=restart_policy(max_restarts=1)))
    handle.start(timeout=HANG)
    handle.stop(timeout=HANG)
    handle.restart(timeout=HANG)
    outcome(handle.submit(event(ValueError("x"))))
    assert handle.wait_for(RUNNING, timeout=HANG)
    assert handle.status().restarts == 2


def test_expired_cancel_grace_is_covered_by_restart_policy(host, gates):
    factory = Factory(Scripted)
    handle = host.add_service("svc", factory, ServiceConfig(
        dispatch_timeout=0.05, cancel_grace=0.05, fail_after=None, restart=restart_policy()))
    handle.start(timeout=HANG)
    handle.submit(event(Hold(gates.new())))
    factory.built[0].entered()
    queued = handle.submit(event("fresh"))
    outcome(queued)
    # The stuck handler was abandoned; a fresh instance served the queued event.
    assert factory.built[1].payloads == ["fresh"]
    status = handle.status()
    assert status.restarts == 1
    assert status.counters.timed_out == 1


def test_automatic_restart_of_shared_instance_waits_for_stuck_handler(host, gates):
    plugin = Scripted()
    handle = host.add_service("svc", plugin, ServiceConfig(
        dispatch_timeout=0.05, cancel_grace=0.05, fail_after=None, restart=restart_policy()))
    handle.start(timeout=HANG)
    hold = Hold(gates.new())
    handle.submit(event(hold))
    assert handle.wait_for(FAILED, timeout=HANG)
    hold.gate.set()
    assert handle.wait_for(RUNNING, timeout=HANG)
    assert plugin.busy_at_start == [0, 0]


def test_manual_restart_of_shared_instance_under_stuck_handler_raises(start_service, gates):
    plugin = Scripted()
    handle = start_service("svc", plugin, dispatch_timeout=0.05, cancel_grace=0.05,
                           fail_after=None)
    handle.submit(event(Hold(gates.new())))
    assert handle.wait_for(FAILED, timeout=HANG)
    with pytest.raises(errors.LifecycleError):
        handle.restart(timeout=HANG)
    assert handle.state is FAILED


def test_counters_are_cumulative_across_restarts(host):
    handle = host.add_service("svc", Factory(Scripted), ServiceConfig(restart=restart_policy()))
    handle.start(timeout=HANG)
    handle.submit(event("one")).result(timeout=HANG)
    outcome(handle.submit(event(ValueError("x"))))
    assert handle.wait_for(RUNNING, timeout=HANG)
    handle.submit(event("two")).result(timeout=HANG)
    counters = handle.status().counters
    assert (counters.enqueued, counters.succeeded, counters.failed) == (3, 2, 1)


def test_failure_after_failed_restart_is_that_start_failure(host):
    factory = failing_start_factory(2)
    handle = host.add_service("svc", factory)
    handle.start(timeout=HANG)
    outcome(handle.submit(event(ValueError("handler broke"))))
    with pytest.raises(errors.ServiceFailed) as raised:
        handle.restart(timeout=HANG)
    failure = handle.status().failure
    assert failure.kind is DiagnosticKind.SERVICE_FAILED
    assert "db down" in failure.message
    assert "db down" in str(raised.value)

