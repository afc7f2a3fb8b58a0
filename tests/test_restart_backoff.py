"""RestartPolicy's growing backoff (multiplier, max_backoff, reset_after) and its
escalation (on_give_up) once the restart intensity is exceeded.

The waits are read from ``status().restart_backoff``, the wait the latest
automatic restart was scheduled with, so they are exact, not measured. The one
private seam: ``reset_after`` is judged on the backoff module's ``_clock``, which
the ``clock`` fixture replaces with a manual one (the watchdog keeps real time).
"""
from __future__ import annotations

import threading

import pytest
from loguru import logger
from support.checks import outcome, wait_until
from support.clock import ManualClock
from support.doubles import Factory, FailingStart, FailingStop, Hold, Scripted, event
from support.states import FAILED, RUNNING
from support.timing import HANG

from plugin_service import DiagnosticKind, RestartPolicy, ServiceConfig, errors
from plugin_service._service import backoff as backoff_module


@pytest.fixture
def clock(monkeypatch):
    manual = ManualClock()
    monkeypatch.setattr(backoff_module, "_clock", manual)
    return manual


@pytest.fixture
def log_records():
    """Records of ours reaching a sink added by the test; logging re-disabled after."""
    records = []
    sink = logger.add(lambda message: records.append(message.record), level=0)
    logger.enable("plugin_service")
    try:
        yield records
    finally:
        logger.remove(sink)
        logger.disable("plugin_service")


def started(host, factory=None, **policy):
    handle = host.add_service("svc", factory or Factory(Scripted),
                              ServiceConfig(restart=RestartPolicy(**policy)))
    handle.start(timeout=HANG)
    return handle


def fail(handle, why="boom"):
    """One event that fails the service (fail_after=1); FAILED once it resolves."""
    assert isinstance(outcome(handle.submit(event(ValueError(why)))), errors.DispatchFailed)


def restart_wait(handle):
    """Fail the service, wait for the automatic restart; the wait it had."""
    fail(handle)
    assert handle.wait_for(RUNNING, timeout=HANG)
    return handle.status().restart_backoff


def waits(handle, count):
    return [restart_wait(handle) for _ in range(count)]


def records_of(records, text):
    return [record for record in list(records) if text in record["message"]]


def join_threads(name):
    """Join every thread called ``name`` (bounded)."""
    for thread in threading.enumerate():
        if thread.name == name and thread is not threading.current_thread():
            thread.join(HANG)
            assert not thread.is_alive()


class GiveUps:
    """An ``on_give_up`` that records each call and what the host looked like."""

    def __init__(self, raises=None):
        self.calls = []
        self.called = threading.Event()
        self.raises = raises
        self.handle = None

    def __call__(self, name, diagnostic):
        status = self.handle.status() if self.handle is not None else None
        self.calls.append((name, diagnostic, status, threading.current_thread().name))
        self.called.set()
        if self.raises is not None:
            raise self.raises


# ------------------------------------------------------------- the policy
def test_restart_policy_keeps_its_positional_fields_and_defaults():
    policy = RestartPolicy(2, 10.0, 0.25)
    assert (policy.max_restarts, policy.window, policy.backoff) == (2, 10.0, 0.25)
    assert (policy.multiplier, policy.max_backoff, policy.reset_after,
            policy.on_give_up) == (1.0, None, None, None)


def test_the_new_restart_settings_are_keyword_only():
    with pytest.raises(TypeError):
        RestartPolicy(2, 10.0, 0.25, 2.0)


@pytest.mark.parametrize("settings, message", [
    (dict(multiplier=0.5), "multiplier must be a finite number >= 1, got 0.5"),
    (dict(multiplier=float("inf")), "multiplier must be a finite number >= 1, got inf"),
    (dict(multiplier=True), "multiplier must be a finite number >= 1, got True"),
    (dict(backoff=1.0, max_backoff=0.5),
     "max_backoff must be a finite number >= backoff (1.0) or None, got 0.5"),
    (dict(reset_after=0), "reset_after must be a finite number of seconds > 0 or None, got 0"),
    (dict(reset_after=float("nan")),
     "reset_after must be a finite number of seconds > 0 or None, got nan"),
])
def test_bad_backoff_settings_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ValueError) as raised:
        RestartPolicy(**settings)
    assert str(raised.value) == message


def test_on_give_up_must_be_callable():
    with pytest.raises(TypeError, match="on_give_up must be a callable"):
        RestartPolicy(on_give_up="page the operator")


# ------------------------------------------------------------- the waits
def test_default_policy_waits_backoff_before_every_restart(host):
    handle = started(host, max_restarts=3, backoff=0.01)
    assert waits(handle, 3) == [0.01, 0.01, 0.01]


def test_no_restart_backoff_in_status_before_the_first_restart(host):
    assert started(host, backoff=0.01).status().restart_backoff is None


def test_restart_waits_grow_by_the_multiplier(host):
    handle = started(host, max_restarts=10, window=None, backoff=0.01, multiplier=2.0)
    assert waits(handle, 4) == pytest.approx([0.01, 0.02, 0.04, 0.08])


def test_restart_waits_are_capped_at_max_backoff(host):
    handle = started(host, max_restarts=10, window=None, backoff=0.01, multiplier=3.0,
                     max_backoff=0.05)
    assert waits(handle, 4) == pytest.approx([0.01, 0.03, 0.05, 0.05])


def test_a_grown_wait_holds_the_restart_back(host):
    handle = started(host, max_restarts=10, window=None, backoff=0.01, multiplier=1000.0)
    assert restart_wait(handle) == 0.01
    fail(handle)
    status = handle.status()
    assert (status.state, status.restart_backoff, status.restarts) == (FAILED, 10.0, 1)
    # No restart can come before its 10 s wait, however loaded the machine.
    assert handle.wait_for(RUNNING, timeout=0.3) is False


def test_a_huge_uncapped_wait_is_still_a_timer_the_watchdog_can_hold(host):
    handle = started(host, max_restarts=10, window=None, backoff=1e-300, multiplier=1e200)
    assert waits(handle, 2) == [1e-300, 1e-100]
    fail(handle)  # 1e200 ** 2 overflows a float
    status = handle.status()
    assert status.state is FAILED
    # Scheduled (not raised), and no longer than a timer can wait for.
    assert 1e9 < status.restart_backoff <= threading.TIMEOUT_MAX


# ------------------------------------------------------------- the reset
def test_a_run_of_reset_after_seconds_without_failing_resets_the_backoff(host, clock):
    handle = started(host, max_restarts=10, window=None, backoff=0.01, multiplier=2.0,
                     reset_after=30.0)
    assert waits(handle, 2) == pytest.approx([0.01, 0.02])
    clock.advance(30.0)  # RUNNING that long since the last restart
    assert waits(handle, 2) == pytest.approx([0.01, 0.02])


def test_a_run_shorter_than_reset_after_keeps_the_backoff_growing(host, clock):
    handle = started(host, max_restarts=10, window=None, backoff=0.01, multiplier=2.0,
                     reset_after=30.0)
    assert waits(handle, 2) == pytest.approx([0.01, 0.02])
    clock.advance(29.5)
    assert restart_wait(handle) == pytest.approx(0.04)


def test_without_reset_after_the_backoff_never_resets(host, clock):
    handle = started(host, max_restarts=10, window=None, backoff=0.01, multiplier=2.0)
    assert waits(handle, 2) == pytest.approx([0.01, 0.02])
    clock.advance(10.0 ** 6)
    assert restart_wait(handle) == pytest.approx(0.04)


def test_a_restart_that_fails_to_start_does_not_reset_the_backoff(host, clock):
    def make():
        plugin = Scripted()
        if len(factory.built) == 1:  # the first automatic restart: long after, then raises
            def start():
                clock.advance(60.0)
                raise RuntimeError("start failed")
            plugin.start = start
        return plugin

    factory = Factory(make)
    handle = started(host, factory, max_restarts=10, window=None, backoff=0.01,
                     multiplier=2.0, reset_after=30.0)
    # The first restart's start() fails 60 s on: it never ran, so the second waits 0.02.
    assert restart_wait(handle) == pytest.approx(0.02)
    assert (handle.status().restarts, len(factory.built)) == (2, 3)


def test_a_manual_restart_resets_the_backoff(host):
    handle = started(host, max_restarts=10, window=None, backoff=0.01, multiplier=2.0)
    assert waits(handle, 2) == pytest.approx([0.01, 0.02])
    handle.stop(timeout=HANG)
    assert handle.restart(timeout=HANG).restart_backoff is None
    assert restart_wait(handle) == pytest.approx(0.01)


# ------------------------------------------------------------- giving up
def test_on_give_up_is_called_once_with_the_name_and_the_failure(host):
    give_ups = GiveUps()
    handle = started(host, max_restarts=1, window=None, backoff=0.0, on_give_up=give_ups)
    restart_wait(handle)
    fail(handle, "second failure")
    assert give_ups.called.wait(HANG)
    [(name, diagnostic, _, _)] = give_ups.calls
    assert name == "svc"
    assert diagnostic is handle.status().failure
    assert diagnostic.kind is DiagnosticKind.DISPATCH_FAILED
    assert "second failure" in diagnostic.message
    assert handle.state is FAILED


def test_on_give_up_runs_on_a_thread_of_its_own_once_the_service_settled(host, gates):
    give_ups = GiveUps()
    factory = Factory(Scripted)
    handle = started(host, factory, max_restarts=1, window=None, backoff=0.0,
                     on_give_up=give_ups)
    give_ups.handle = handle  # it reads status(), which takes the service's lock
    restart_wait(handle)
    hold = Hold(gates.new(), raises=ValueError("boom"))
    handle.submit(event(hold))
    factory.built[1].entered()
    queued = handle.submit(event("queued"))
    hold.gate.set()
    assert give_ups.called.wait(HANG)
    [(_, _, status, thread)] = give_ups.calls
    assert thread == "svc-give-up"  # neither the worker ("svc") nor the watchdog
    assert (status.state, status.counters.dropped) == (FAILED, 1)
    assert queued.done() and isinstance(outcome(queued), errors.ServiceFailed)


def test_on_give_up_is_called_again_for_each_give_up(host):
    give_ups = GiveUps()
    handle = started(host, max_restarts=1, window=None, backoff=0.0, on_give_up=give_ups)
    restart_wait(handle)
    fail(handle)
    assert give_ups.called.wait(HANG)
    give_ups.called.clear()
    handle.restart(timeout=HANG)
    fail(handle, "after the manual restart")  # the one automatic restart is spent
    assert give_ups.called.wait(HANG)
    assert ["after the manual restart" in call[1].message for call in give_ups.calls] \
        == [False, True]


def test_on_give_up_may_restart_the_service_itself(host):
    restarted = []

    def try_again(name, diagnostic):
        restarted.append(handle.restart(timeout=HANG).state)

    handle = started(host, max_restarts=1, window=None, backoff=0.0, on_give_up=try_again)
    restart_wait(handle)
    fail(handle)
    wait_until(lambda: restarted, what="on_give_up's restart")
    assert restarted == [RUNNING]
    assert handle.submit(event("again")).result(timeout=HANG) == "again"


def test_a_raising_on_give_up_is_logged_and_the_service_stays_failed(host, log_records):
    give_ups = GiveUps(raises=RuntimeError("pager down: password=hunter2"))
    handle = started(host, max_restarts=1, window=None, backoff=0.0, on_give_up=give_ups)
    restart_wait(handle)
    fail(handle)
    assert give_ups.called.wait(HANG)
    wait_until(lambda: records_of(log_records, "on_give_up raised"),
               what="the record of on_give_up raising")
    [record] = records_of(log_records, "on_give_up raised")
    assert record["level"].name == "ERROR" and record["extra"]["service"] == "svc"
    assert "pager down" in record["message"] and "hunter2" not in record["message"]
    status = handle.status()
    assert (status.state, status.restarts) == (FAILED, 1)


def test_giving_up_is_logged_without_on_give_up(host, log_records):
    handle = started(host, max_restarts=1, window=60.0, backoff=0.0)
    restart_wait(handle)
    fail(handle)
    messages = [r["message"] for r in records_of(log_records, "gave up restarting")]
    assert messages == ["service 'svc': gave up restarting: 1 automatic restarts within 60s;"
                        " stays FAILED"]


def test_a_failed_start_reported_to_its_caller_does_not_give_up(host):
    give_ups = GiveUps()
    handle = host.add_service("svc", FailingStart(RuntimeError("db down")), ServiceConfig(restart=RestartPolicy(
        max_restarts=1, window=None, backoff=0.0, on_give_up=give_ups)))
    with pytest.raises(errors.ServiceFailed):
        handle.start(timeout=HANG)
    join_threads("svc")  # the worker; a give-up would have been started before it ended
    join_threads("svc-give-up")
    assert give_ups.calls == []


def test_a_failure_while_the_host_closes_does_not_give_up(make_host):
    give_ups = GiveUps()
    host = make_host()
    handle = host.add_service("svc", FailingStop(RuntimeError("flush failed")),
                              ServiceConfig(restart=RestartPolicy(
                                  max_restarts=1, window=None, on_give_up=give_ups)))
    handle.start(timeout=HANG)
    host.close(timeout=HANG)
    assert handle.state is FAILED
    join_threads("svc")
    join_threads("svc-give-up")
    assert give_ups.calls == []
