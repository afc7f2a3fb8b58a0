"""RetryPolicy: inline redelivery through tenacity."""
from __future__ import annotations

import threading
import time

import pytest
from support.checks import outcome
from support.doubles import Recorder, event
from support.states import RUNNING, STOPPED
from support.timing import HANG

from plugin_service import DiagnosticKind, RetryPolicy, errors

FAST = RetryPolicy(max_attempts=3, backoff=0.0, max_backoff=0.0)


class FailsUntil(Recorder):
    """Raises for attempts below ``succeed_on`` (never, when None); records attempts."""

    def __init__(self, succeed_on=None, error=ValueError):
        super().__init__()
        self.succeed_on = succeed_on
        self.error = error
        self.raised = []
        self.first_failed = threading.Event()

    def behave(self, event, ctx):
        if self.succeed_on is not None and event.attempt >= self.succeed_on:
            return "ok on %d" % event.attempt
        error = self.error("attempt %d failed" % event.attempt)
        self.raised.append(error)
        self.first_failed.set()
        raise error


class FailsFirstAttemptOf(Recorder):
    """Raises on the first attempt of events carrying ``payload``; echoes otherwise."""

    def __init__(self, payload):
        super().__init__()
        self.flaky = payload

    def behave(self, event, ctx):
        if event.payload == self.flaky and event.attempt == 1:
            raise ValueError("flaky first attempt")
        return event.payload


class FailsThenTimesOut(Recorder):
    """Attempt 1 raises; later attempts sleep through ctx.wait() until cancelled."""

    def behave(self, event, ctx):
        if event.attempt == 1:
            raise ValueError("first")
        ctx.wait()
        raise ValueError("after timeout")


class TimesOutThenRaises(Recorder):
    """Sleeps through ctx.wait() until cancelled, then raises."""

    def behave(self, event, ctx):
        ctx.wait()
        raise ValueError("raised after its deadline")


def test_failed_event_is_redelivered_with_attempt_incremented(start_service):
    plugin = FailsUntil(succeed_on=3)
    handle = start_service("svc", plugin, retry=FAST)
    assert handle.submit(event("x")).result(timeout=HANG) == "ok on 3"
    assert [e.attempt for e in plugin.events] == [1, 2, 3]


def test_redeliveries_keep_the_correlation_id(start_service):
    plugin = FailsUntil(succeed_on=3)
    handle = start_service("svc", plugin, retry=FAST)
    submitted = event("x")
    handle.submit(submitted).result(timeout=HANG)
    assert [e.correlation_id for e in plugin.events] == [submitted.correlation_id] * 3
    assert [e.payload for e in plugin.events] == ["x"] * 3


def test_redeliveries_are_counted_in_retried(start_service):
    handle = start_service("svc", FailsUntil(succeed_on=3), retry=FAST)
    handle.submit(event("x")).result(timeout=HANG)
    assert handle.status().counters.retried == 2


def test_only_the_final_outcome_counts(start_service):
    handle = start_service("svc", FailsUntil(succeed_on=2), retry=FAST, fail_after=1)
    handle.submit(event("x")).result(timeout=HANG)
    counters = handle.status().counters
    assert (counters.dispatched, counters.succeeded, counters.failed) == (1, 1, 0)
    assert handle.state is RUNNING


def test_exhausted_retries_fail_with_last_exception_as_cause(start_service):
    plugin = FailsUntil()
    handle = start_service("svc", plugin, retry=FAST, fail_after=None)
    with pytest.raises(errors.DispatchFailed) as raised:
        handle.submit(event("x")).result(timeout=HANG)
    assert len(plugin.raised) == 3
    assert raised.value.__cause__ is plugin.raised[-1]


def test_exhausted_retries_count_one_failure(start_service):
    handle = start_service("svc", FailsUntil(), retry=FAST, fail_after=None)
    outcome(handle.submit(event("x")))
    counters = handle.status().counters
    assert (counters.failed, counters.retried) == (1, 2)


def test_dead_letter_carries_the_last_attempt(host, start_service):
    handle = start_service("svc", FailsUntil(), retry=FAST, fail_after=None)
    submitted = event("x")
    outcome(handle.submit(submitted))
    [letter] = host.dead_letters()
    assert letter.event.attempt == 3
    assert letter.event.correlation_id == submitted.correlation_id
    assert letter.diagnostic.kind is DiagnosticKind.DISPATCH_FAILED


def test_exception_outside_retry_on_is_not_retried(start_service):
    policy = RetryPolicy(max_attempts=3, backoff=0.0, retry_on=(KeyError,))
    plugin = FailsUntil(error=ValueError)
    handle = start_service("svc", plugin, retry=policy, fail_after=None)
    assert isinstance(outcome(handle.submit(event("x"))), errors.DispatchFailed)
    assert [e.attempt for e in plugin.events] == [1]
    assert handle.status().counters.retried == 0


def test_timed_out_event_is_not_retried(start_service):
    plugin = TimesOutThenRaises()
    handle = start_service("svc", plugin, retry=FAST, dispatch_timeout=0.05, fail_after=None)
    future = handle.submit(event("x"))
    assert isinstance(outcome(future), errors.DispatchTimeout)
    handle.stop(timeout=HANG)  # lets the handler finish
    assert [e.attempt for e in plugin.events] == [1]
    counters = handle.status().counters
    assert (counters.timed_out, counters.failed, counters.retried) == (1, 0, 0)


def test_dispatch_timeout_applies_to_each_attempt(host, start_service):
    plugin = FailsThenTimesOut()
    handle = start_service("svc", plugin, retry=FAST, dispatch_timeout=0.3, fail_after=None)
    assert isinstance(outcome(handle.submit(event("x"))), errors.DispatchTimeout)
    handle.stop(timeout=HANG)
    assert [e.attempt for e in plugin.events] == [1, 2]
    assert plugin.contexts[1].deadline is not None
    counters = handle.status().counters
    assert (counters.timed_out, counters.failed, counters.retried) == (1, 0, 1)
    [letter] = host.dead_letters()
    assert (letter.event.attempt, letter.diagnostic.kind) == (2, DiagnosticKind.DISPATCH_TIMEOUT)


def test_retries_keep_event_order(start_service):
    plugin = FailsFirstAttemptOf("flaky")
    handle = start_service("svc", plugin, retry=FAST)
    futures = [handle.submit(event(p)) for p in ("flaky", "next")]
    assert [f.result(timeout=HANG) for f in futures] == ["flaky", "next"]
    assert plugin.payloads == ["flaky", "flaky", "next"]


def test_stop_cuts_retry_backoff_short(start_service):
    slow = RetryPolicy(max_attempts=3, backoff=60.0, max_backoff=60.0)
    plugin = FailsUntil()
    handle = start_service("svc", plugin, retry=slow, fail_after=None)
    future = handle.submit(event("x"))
    assert plugin.first_failed.wait(HANG)
    began = time.monotonic()
    status = handle.stop(timeout=10.0)
    assert time.monotonic() - began < HANG
    assert status.state is STOPPED
    with pytest.raises(errors.DispatchFailed) as raised:
        future.result(timeout=0)
    assert raised.value.__cause__ is plugin.raised[0]
    assert [e.attempt for e in plugin.events] == [1]


def test_ctx_event_is_the_redelivered_copy(start_service):
    plugin = FailsUntil(succeed_on=2)
    handle = start_service("svc", plugin, retry=FAST)
    handle.submit(event("x")).result(timeout=HANG)
    assert [ctx.event.attempt for ctx in plugin.contexts] == [1, 2]
