"""Latency histograms in status: queue wait and handler time per service
(``ServiceConfig(latency_histograms=True)``), call time per tool (always kept).

Durations are checked against lower bounds the test measured itself: a handler
held on a gate while the test lets HELD seconds pass is known to run at least
that long, whatever the scheduling; nothing here waits for time to synchronise.
"""
from __future__ import annotations

import time
from typing import Any, List, Tuple

import pytest
from support.checks import assert_histogram, assert_invariants, outcome
from support.doubles import Blocking, Echo, Raising, event
from support.timing import HANG

from plugin_service import LatencyHistogram, ServiceConfig, errors
from plugin_service._latency import FOLD_AT, LATENCY_BUCKETS, LatencyRecorder

HELD = 0.05


def below(histogram: Any, seconds: float) -> List[int]:
    """The cumulative counts of the buckets whose bound is under ``seconds``."""
    return [count for bound, count in histogram.buckets if bound < seconds]


# ------------------------------------------------------------- the recorder
def test_a_duration_equal_to_a_bound_counts_in_that_bucket() -> None:
    recorder = LatencyRecorder()
    recorder.observe(0.001)
    recorder.observe(0.0011)
    histogram = recorder.snapshot()
    counts = dict(histogram.buckets)
    assert (counts[0.0005], counts[0.001], counts[0.0025]) == (0, 1, 2)
    assert (histogram.count, histogram.sum) == (2, pytest.approx(0.0021))


def test_the_recorder_folds_batches_into_exact_cumulative_counts() -> None:
    recorder = LatencyRecorder()
    durations = [bound for bound in LATENCY_BUCKETS] * (FOLD_AT // 10) + [11.0, 0.0]
    for seconds in durations:
        recorder.observe(seconds)
    assert len(recorder) < FOLD_AT  # some were folded on the way
    histogram = recorder.snapshot()
    assert histogram.count == len(durations)
    assert histogram.sum == pytest.approx(sum(durations))
    expected = [sum(1 for d in durations if d <= bound) for bound in LATENCY_BUCKETS]
    assert [count for _bound, count in histogram.buckets] == expected
    assert recorder.snapshot() == histogram  # a snapshot changes nothing


def test_an_empty_histogram_has_every_bound_and_nothing_counted() -> None:
    histogram = LatencyHistogram()
    assert [bound for bound, _ in histogram.buckets] == list(LATENCY_BUCKETS)
    assert {count for _, count in histogram.buckets} == {0}
    assert (histogram.count, histogram.sum) == (0, 0.0)


# ----------------------------------------------------------------- services
def test_services_keep_no_latency_histograms_unless_asked(start_service: Any) -> None:
    assert ServiceConfig().latency_histograms is False
    handle = start_service("plain", Echo())
    assert outcome(handle.submit(event(1))) == 1
    status = handle.status()
    assert (status.queue_wait, status.handler_time) == (None, None)
    assert status.to_dict()["queue_wait"] is None


def test_latency_histograms_take_a_bool_only() -> None:
    with pytest.raises(TypeError):
        ServiceConfig(latency_histograms=1)  # type: ignore[arg-type]


def test_histograms_stay_exact_across_many_folds(start_service: Any) -> None:
    handle = start_service("many", Echo(), queue_size=64, latency_histograms=True)
    n = 3 * FOLD_AT + 7
    futures = [handle.submit(event(i), block=True, timeout=HANG) for i in range(n)]
    assert [outcome(future) for future in futures] == list(range(n))
    status = handle.status()
    assert_invariants(status)
    for histogram in (status.queue_wait, status.handler_time):
        assert histogram is not None
        assert_histogram(histogram)
        assert histogram.count == n
    assert status.to_dict()["handler_time"]["count"] == n


def test_failed_events_are_observed_and_timed_out_ones_are_not(start_service: Any,
                                                               gates: Any) -> None:
    gate = gates.new()
    stuck = start_service("stuck", Blocking(gate), dispatch_timeout=HELD, fail_after=None,
                          latency_histograms=True)
    assert isinstance(outcome(stuck.submit(event("late"))), errors.DispatchTimeout)
    gate.set()  # it returns, late: its settle must not observe it
    assert outcome(stuck.submit(event("next"))) == "next"
    raising = start_service("raising", Raising(), fail_after=None, latency_histograms=True)
    assert isinstance(outcome(raising.submit(event(1))), errors.DispatchFailed)
    for handle, expected in ((stuck, 1), (raising, 1)):
        status = handle.status()
        assert_invariants(status)
        assert status.queue_wait is not None and status.handler_time is not None
        assert status.queue_wait.count == status.handler_time.count == expected
    assert stuck.status().counters.timed_out == 1


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["no-timeout", "timeout"])
def test_handler_time_runs_from_the_invocation_to_the_outcome(
        start_service: Any, gates: Any, timeout: Any) -> None:
    gate = gates.new()
    plugin = Blocking(gate)
    handle = start_service("held", plugin, dispatch_timeout=timeout, latency_histograms=True)
    future = handle.submit(event("held"))
    plugin.entered()
    entered = time.monotonic()
    time.sleep(HELD)  # a known lower bound, not a synchronisation
    gate.set()
    assert outcome(future) == "held"
    ran = time.monotonic() - entered
    run = handle.status().handler_time
    assert run is not None and run.count == 1
    assert HELD <= run.sum and below(run, HELD) == [0] * len(below(run, HELD))
    assert run.sum <= ran + 1.0  # from its invocation, not from long before


def test_a_blocked_submit_waits_in_the_queue_only_once_queued(
        start_service: Any, gates: Any, background: Any) -> None:
    gate = gates.new()
    plugin = Blocking(gate)
    handle = start_service("full", plugin, queue_size=1, latency_histograms=True)
    held = handle.submit(event("held"))
    plugin.entered()
    queued = handle.submit(event("queued"))
    blocked = background(handle.submit, event("blocked"), block=True, timeout=HANG)
    # Long enough that only the one queued all along can have waited this long.
    wait_for_room = 0.5
    time.sleep(wait_for_room)
    gate.set()
    results = [outcome(future) for future in (held, queued, blocked.result(HANG))]
    assert results == ["held", "queued", "blocked"]
    wait = handle.status().queue_wait
    assert wait is not None and wait.count == 3
    counts = dict(wait.buckets)
    # "held" and "blocked" waited moments each; "queued" waited the whole hold.
    assert counts[0.25] == 2 and wait.sum >= wait_for_room


# -------------------------------------------------------------------- tools
def _call_times(host: Any, name: str) -> Tuple[Any, Any]:
    status = host.status().tools[name]
    return status.call_time, status.counters


def test_tool_call_time_observes_every_call_that_ended(host: Any, make_stuck: Any) -> None:
    host.add_tool("echo", lambda request, ctx: request)
    assert host.call_tool("echo", 1, timeout=HANG) == 1

    def fail(request: Any, ctx: Any) -> Any:
        raise KeyError(request)

    host.add_tool("fail", fail)
    with pytest.raises(errors.ToolFailed):
        host.call_tool("fail", 1, timeout=HANG)
    stuck = make_stuck()
    host.add_tool("stuck", stuck)
    with pytest.raises(errors.ToolTimeout):
        host.call_tool("stuck", 1, timeout=HELD)
    for name in ("echo", "fail", "stuck"):
        call_time, counters = _call_times(host, name)
        assert_histogram(call_time)
        assert call_time.count == counters.succeeded + counters.failed + counters.timed_out == 1
    late, _ = _call_times(host, "stuck")
    assert late.sum >= HELD and below(late, HELD) == [0] * len(below(late, HELD))


def test_tool_call_time_runs_from_admission(host: Any, make_gate: Any) -> None:
    gate = make_gate()
    host.add_tool("gated", gate)
    future = host.submit_tool("gated", "x", timeout=HANG)
    admitted = time.monotonic()
    assert gate.wait_entered()
    time.sleep(HELD)  # a known lower bound, not a synchronisation
    gate.release()
    future.result(timeout=HANG)
    assert time.monotonic() - admitted >= HELD
    call_time, counters = _call_times(host, "gated")
    assert counters.succeeded == call_time.count == 1 and call_time.sum >= HELD


def test_posted_and_batched_events_are_observed_like_submitted_ones(
        start_service: Any) -> None:
    handle = start_service("batches", Echo(), queue_size=64, latency_histograms=True)
    began = time.monotonic()
    handle.post(event(1))
    handle.post_many([event(2), event(3)])
    with pytest.raises(errors.BatchRejected) as rejected:  # the valid one is queued
        handle.submit_many([event(4), event(5, ingress="no such ingress")])
    accepted = rejected.value.results[0]
    futures = handle.submit_many([event(6), event(7)])
    # FIFO: once the last one is done, every one before it is.
    assert [outcome(future) for future in [accepted] + futures] == [4, 6, 7]
    status = handle.status()
    assert_invariants(status)
    assert status.counters.succeeded == 6
    elapsed = time.monotonic() - began
    for histogram in (status.queue_wait, status.handler_time):
        assert histogram is not None and histogram.count == 6
        assert histogram.sum <= 6 * elapsed  # each timed from its acceptance
