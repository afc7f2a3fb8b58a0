"""Nothing lost: every accepted event ends in exactly one recorded outcome."""
from __future__ import annotations

import threading

import pytest
from support.checks import assert_invariants, outcome
from support.doubles import Echo, Hold, Raising, Recorder, Scripted, event
from support.states import STOPPED
from support.timing import HANG

from plugin_service import DiagnosticKind, PluginHost, ServiceConfig, errors

PRODUCERS = 3
PER_PRODUCER = 60


class Mixed(Recorder):
    """Succeeds, fails or (cooperatively) times out depending on the payload."""

    def behave(self, event, ctx):
        seq = event.payload[1]
        if seq % 6 == 0:
            raise ValueError("failing %r" % (event.payload,))
        if seq == 5:
            ctx.wait()  # until the deadline cancels it: one time-out per producer
        return event.payload


@pytest.fixture
def busy_run(host, background):
    """Producers and the worker busy while a sampler checks every snapshot."""
    plugin = Mixed()
    handle = host.add_service("busy", plugin, ServiceConfig(
        queue_size=4, dispatch_timeout=0.2, cancel_grace=HANG, fail_after=None))
    handle.start(timeout=HANG)
    barrier = threading.Barrier(PRODUCERS + 1)
    done = threading.Event()

    def produce(producer):
        barrier.wait(HANG)
        futures = []
        for seq in range(PER_PRODUCER):
            try:
                futures.append(handle.submit(event((producer, seq)), block=True, timeout=HANG))
            except errors.QueueFull:
                pass
        return futures

    def sample():
        snapshots = violations = 0
        barrier.wait(HANG)
        while not done.is_set():
            for status in (handle.status(), host.status().services["busy"]):
                snapshots += 1
                try:
                    assert_invariants(status)
                except AssertionError:
                    violations += 1
        return snapshots, violations

    sampler = background(sample)
    producers = [background(produce, n) for n in range(PRODUCERS)]
    try:
        futures = [f for p in producers for f in p.result(timeout=HANG * 4)]
        outcomes = [outcome(f) for f in futures]
    finally:
        done.set()
    snapshots, violations = sampler.result(timeout=HANG)
    handle.stop(timeout=HANG)
    return handle, futures, outcomes, snapshots, violations


def test_invariants_hold_in_every_snapshot_while_busy(busy_run):
    _, _, _, snapshots, violations = busy_run
    assert snapshots > 0
    assert violations == 0


def test_every_accepted_event_ends_in_exactly_one_outcome(busy_run):
    handle, futures, outcomes, _, _ = busy_run
    counters = handle.status().counters
    succeeded = sum(1 for o in outcomes if not isinstance(o, BaseException))
    failed = sum(1 for o in outcomes if isinstance(o, errors.DispatchFailed))
    timed_out = sum(1 for o in outcomes if isinstance(o, errors.DispatchTimeout))
    assert counters.enqueued == len(futures) == PRODUCERS * PER_PRODUCER
    assert (counters.succeeded, counters.failed, counters.timed_out, counters.dropped) == (
        succeeded, failed, timed_out, 0)
    assert succeeded + failed + timed_out == len(futures)


def test_invariants_hold_after_a_busy_run(busy_run):
    handle, _, _, _, _ = busy_run
    status = handle.status()
    assert status.state is STOPPED
    assert (status.queue_depth, status.in_flight) == (0, 0)
    assert_invariants(status)


def test_invariants_hold_with_an_event_in_flight_and_events_queued(start_service, gates):
    plugin = Scripted()
    handle = start_service("svc", plugin)
    handle.submit(event(Hold(gates.new())))
    plugin.entered()
    handle.submit(event("queued"))
    status = handle.status()
    assert (status.in_flight, status.queue_depth, status.counters.enqueued) == (1, 1, 2)
    assert_invariants(status)


def test_successful_event_is_counted_before_its_future_resolves(start_service):
    handle = start_service("svc", Echo())
    handle.submit(event(1)).result(timeout=HANG)
    counters = handle.status().counters
    assert (counters.enqueued, counters.dispatched, counters.succeeded) == (1, 1, 1)


def test_failed_event_is_recorded_before_its_future_resolves(host, start_service):
    handle = start_service("svc", Raising(), fail_after=None)
    submitted = event(1)
    with pytest.raises(errors.DispatchFailed):
        handle.submit(submitted).result(timeout=HANG)
    status = handle.status()
    assert status.counters.failed == 1
    assert status.last_error.kind is DiagnosticKind.DISPATCH_FAILED
    assert status.last_error.correlation_id == submitted.correlation_id
    assert [letter.event for letter in host.dead_letters()] == [submitted]


def test_dead_letters_hold_failed_timed_out_and_dropped_events(host, start_service, gates):
    plugin = Scripted()
    handle = start_service("svc", plugin, dispatch_timeout=0.3, cancel_grace=HANG,
                           fail_after=None)
    failed = event(ValueError("x"))
    timed_out = event("wait")
    outcome(handle.submit(failed))
    outcome(handle.submit(timed_out))
    hold = Hold(gates.new())
    handle.submit(event(hold))
    entered = [plugin.entered() for _ in range(3)]
    assert entered[-1].payload is hold  # held in flight, so the next stays queued
    dropped = event("dropped")
    handle.submit(dropped)
    hold.gate.set()
    handle.stop(drain=False, timeout=HANG)
    kinds = {letter.event.correlation_id: letter.diagnostic.kind
             for letter in host.dead_letters() if letter.event.payload is not hold}
    assert kinds == {
        failed.correlation_id: DiagnosticKind.DISPATCH_FAILED,
        timed_out.correlation_id: DiagnosticKind.DISPATCH_TIMEOUT,
        dropped.correlation_id: DiagnosticKind.SERVICE_STOPPED,
    }


def test_dead_letter_diagnostic_carries_correlation_id_and_service(host, start_service):
    handle = start_service("svc", Raising(), fail_after=None)
    submitted = event(1)
    outcome(handle.submit(submitted))
    [letter] = host.dead_letters()
    assert letter.service == "svc"
    assert letter.event == submitted
    assert letter.diagnostic.correlation_id == submitted.correlation_id


def test_successful_events_leave_no_dead_letter(host, start_service):
    handle = start_service("svc", Echo())
    for n in range(5):
        handle.submit(event(n)).result(timeout=HANG)
    assert host.dead_letters() == []


def test_dead_letter_list_keeps_the_newest_up_to_its_limit():
    plugin_host = PluginHost(dead_letter_limit=3)
    try:
        handle = plugin_host.add_service("svc", Raising(), ServiceConfig(fail_after=None))
        handle.start(timeout=HANG)
        submitted = [event(n) for n in range(5)]
        for item in submitted:
            outcome(handle.submit(item))
        assert [letter.event for letter in plugin_host.dead_letters()] == submitted[2:]
    finally:
        plugin_host.close(timeout=HANG)


def test_withdrawn_queued_event_counts_as_dropped(start_service, gates):
    plugin = Scripted()
    handle = start_service("svc", plugin)
    handle.submit(event(Hold(gates.new())))
    plugin.entered()
    queued = handle.submit(event("withdrawn"))
    assert queued.cancel() is True
    status = handle.status()
    assert (status.counters.dropped, status.queue_depth) == (1, 0)
    assert_invariants(status)
