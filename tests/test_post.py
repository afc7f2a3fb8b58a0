"""Fire and forget: ``post`` is ``submit`` without a future, with the same checks,
back-pressure and typed rejections, and its outcome recorded exactly the same way."""
from __future__ import annotations

import threading
from typing import Any, List, Set

import pytest
from support.checks import assert_invariants, outcome
from support.doubles import Blocking, Echo, Raising, Recorder, Scripted, event
from support.states import FAILED, RUNNING, STOPPED
from support.timing import HANG

from plugin_service import (
    DiagnosticKind,
    PluginHost,
    RestartPolicy,
    RetryPolicy,
    ServiceConfig,
    errors,
)


def test_post_returns_the_correlation_id_and_the_event_is_handled(start_service):
    plugin = Echo()
    handle = start_service("svc", plugin)
    sent = event("hello")
    cid = handle.post(sent)
    assert cid == sent.correlation_id
    assert plugin.entered() is sent
    handle.stop(timeout=HANG)
    counters = handle.status().counters
    assert (counters.enqueued, counters.dispatched, counters.succeeded) == (1, 1, 1)


def test_host_post_forwards_and_an_unknown_name_is_service_not_found(host):
    plugin = Echo()
    host.add_service("svc", plugin, ServiceConfig())
    host.start_all(timeout=HANG)
    sent = event(1)
    assert host.post("svc", sent) == sent.correlation_id
    assert plugin.entered() is sent
    with pytest.raises(errors.ServiceNotFound):
        host.post("nope", event(2))


def test_a_posted_failure_is_recorded_like_a_submitted_one(host):
    plugin = Raising()
    handle = host.add_service("svc", plugin, ServiceConfig(fail_after=None))
    handle.start(timeout=HANG)
    posted = event("p")
    submitted = event("s")
    handle.post(posted)
    future = handle.submit(submitted)
    assert isinstance(outcome(future), errors.DispatchFailed)
    status = handle.status()
    assert status.counters.failed == 2
    cids = [d.correlation_id for d in status.diagnostics
            if d.kind is DiagnosticKind.DISPATCH_FAILED]
    assert cids == [posted.correlation_id, submitted.correlation_id]
    letters = [letter.event for letter in host.dead_letters()]
    assert letters == [posted, submitted]


def test_a_posted_failure_counts_toward_fail_after(start_service):
    handle = start_service("svc", Raising(), fail_after=2)
    handle.post(event(1))
    handle.post(event(2))
    assert handle.wait_for(FAILED, timeout=HANG)
    assert handle.status().counters.failed == 2


def test_a_posted_timeout_is_timed_out_and_a_dead_letter(host):
    handle = host.add_service("svc", Scripted(), ServiceConfig(
        dispatch_timeout=0.05, cancel_grace=HANG, fail_after=None))
    handle.start(timeout=HANG)
    late = event("wait")  # sleeps in ctx.wait() until the deadline cancels it
    handle.post(late)
    # FIFO: once this one is answered, the posted one was decided.
    assert outcome(handle.submit(event("after"))) == "after"
    status = handle.status()
    assert status.counters.timed_out == 1
    assert status.last_error.kind is DiagnosticKind.DISPATCH_TIMEOUT
    assert [letter.event for letter in host.dead_letters()] == [late]


def test_a_posted_event_is_retried_by_the_retry_policy(start_service):
    attempts: List[int] = []

    class FailsOnce(Recorder):
        def behave(self, ev, ctx):
            attempts.append(ev.attempt)
            if ev.attempt == 1:
                raise ValueError("first attempt")
            return ev.attempt

    handle = start_service("svc", FailsOnce(), retry=RetryPolicy(max_attempts=2, backoff=0))
    handle.post(event(1))
    assert outcome(handle.submit(event(2))) == 2  # its second attempt succeeded
    assert attempts == [1, 2, 1, 2]  # the posted one first, redelivered once too
    counters = handle.status().counters
    assert (counters.succeeded, counters.failed, counters.retried) == (2, 0, 2)


def test_a_posted_failure_triggers_the_restart_policy(host):
    instances: List[Any] = []
    second = threading.Event()

    def make():
        plugin = Raising()
        instances.append(plugin)
        if len(instances) == 2:
            second.set()
        return plugin

    handle = host.add_service("svc", make, ServiceConfig(
        fail_after=1, restart=RestartPolicy(max_restarts=1, window=60, backoff=0)))
    handle.start(timeout=HANG)
    handle.post(event(1))
    assert second.wait(HANG), "the restart policy never built a second instance"
    assert handle.wait_for(RUNNING, timeout=HANG)
    status = handle.status()
    assert status.restarts == 1 and status.counters.failed == 1
    assert any(d.kind is DiagnosticKind.LIFECYCLE and d.message.startswith("running -> failed")
               for d in status.diagnostics)


@pytest.mark.parametrize(("when", "error"), [
    ("before start", errors.ServiceUnavailable),
    ("after stop", errors.ServiceStopped),
])
def test_post_refuses_with_the_state_error(host, when, error):
    handle = host.add_service("svc", Echo(), ServiceConfig())
    if when == "after stop":
        handle.start(timeout=HANG)
        handle.stop(timeout=HANG)
    with pytest.raises(error):
        handle.post(event(1))
    assert handle.status().counters.rejected == 1
    assert handle.status().counters.enqueued == 0


def test_post_of_a_failed_service_is_service_failed(start_service):
    handle = start_service("svc", Raising(), fail_after=1)
    handle.post(event(1))
    assert handle.wait_for(FAILED, timeout=HANG)
    with pytest.raises(errors.ServiceFailed):
        handle.post(event(2))


@pytest.mark.parametrize("bad", ["not an event", event(1, ingress="undeclared"),
                                 event(1, source=" "), event(1, attempt=0)])
def test_post_refuses_an_invalid_event(start_service, bad):
    handle = start_service("svc", Echo())
    with pytest.raises(errors.InvalidEvent):
        handle.post(bad)
    status = handle.status()
    assert (status.counters.rejected, status.counters.enqueued) == (1, 0)
    assert status.last_error.kind is DiagnosticKind.INVALID_EVENT


def test_post_to_a_full_queue_is_queue_full_at_once_or_after_the_timeout(gates, start_service):
    gate = gates.new()
    plugin = Blocking(gate)
    handle = start_service("svc", plugin, queue_size=1)
    handle.post(event(1))
    plugin.entered()
    handle.post(event(2))  # fills the queue of one
    with pytest.raises(errors.QueueFull) as at_once:
        handle.post(event(3))
    assert at_once.value.capacity == 1
    with pytest.raises(errors.QueueFull):
        handle.post(event(4), block=True, timeout=0.05)
    assert handle.status().counters.rejected == 2
    gate.set()
    handle.stop(timeout=HANG)
    assert plugin.payloads == [1, 2]


def test_a_blocked_post_goes_in_once_there_is_room(gates, background, start_service):
    gate = gates.new()
    plugin = Blocking(gate)
    handle = start_service("svc", plugin, queue_size=1)
    handle.post(event(1))
    plugin.entered()
    handle.post(event(2))
    waiting = background(handle.post, event(3), block=True, timeout=HANG)
    gate.set()
    assert isinstance(waiting.result(timeout=HANG), str)
    handle.stop(timeout=HANG)
    assert plugin.payloads == [1, 2, 3]


def test_posted_events_still_queued_at_a_stop_without_drain_are_dropped(gates, host):
    gate = gates.new()
    plugin = Blocking(gate)
    handle = host.add_service("svc", plugin, ServiceConfig(queue_size=4))
    handle.start(timeout=HANG)
    handle.post(event(1))
    plugin.entered()
    queued = [event(2), event(3)]
    for ev in queued:
        handle.post(ev)
    stopping = threading.Thread(target=handle.stop, kwargs={"drain": False, "timeout": HANG})
    stopping.start()
    assert handle.wait_for("stopping", timeout=HANG)
    gate.set()
    stopping.join(HANG)
    status = handle.status()
    assert status.state is STOPPED
    assert (status.counters.succeeded, status.counters.dropped) == (1, 2)
    assert [letter.event for letter in host.dead_letters()] == queued
    assert plugin.payloads == [1]


def test_post_in_a_forked_child_is_host_forked(start_service):
    handle = start_service("svc", Echo())
    handle._forked_from = 1  # what the host's at-fork hook marks in a child
    try:
        with pytest.raises(errors.HostForked):
            handle.post(event(1))
    finally:
        handle._forked_from = 0


# ------------------------------------------------- mixed with submit, under load
PRODUCERS = 4
PER_PRODUCER = 150


class Tally(Recorder):
    """Counts each correlation id it handles; odd payloads fail."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[str] = []

    def behave(self, ev, ctx):
        self.seen.append(ev.correlation_id)
        if ev.payload[1] % 7 == 3:
            raise ValueError("failing %r" % (ev.payload,))
        return ev.payload


def test_posts_and_submits_from_many_threads_each_end_in_one_outcome(host, background):
    plugin = Tally()
    handle = host.add_service("mixed", plugin, ServiceConfig(queue_size=8, fail_after=None))
    handle.start(timeout=HANG)
    barrier = threading.Barrier(PRODUCERS + 1)
    done = threading.Event()

    def produce(producer: int) -> List[str]:
        barrier.wait(HANG)
        cids = []
        for seq in range(PER_PRODUCER):
            ev = event((producer, seq))
            if seq % 2:
                cids.append(handle.post(ev, block=True, timeout=HANG))
            else:
                handle.submit(ev, block=True, timeout=HANG)
                cids.append(ev.correlation_id)
        return cids

    def sample() -> int:
        barrier.wait(HANG)
        snapshots = 0
        while not done.is_set():
            assert_invariants(handle.status())
            snapshots += 1
        return snapshots

    producers = [background(produce, p) for p in range(PRODUCERS)]
    sampler = background(sample)
    sent: Set[str] = set()
    for future in producers:
        sent.update(future.result(timeout=HANG * 4))
    handle.stop(timeout=HANG)
    done.set()
    assert sampler.result(timeout=HANG) > 0
    assert sorted(plugin.seen) == sorted(sent)  # each one handled exactly once
    assert len(sent) == PRODUCERS * PER_PRODUCER
    counters = handle.status().counters
    failing = sum(1 for seq in range(PER_PRODUCER) if seq % 7 == 3) * PRODUCERS
    assert counters.enqueued == len(sent)
    assert (counters.failed, counters.succeeded) == (failing, len(sent) - failing)
    assert_invariants(handle.status())


def test_post_works_on_the_ray_backend(ray_host: PluginHost):
    from support.contract import OpScripted
    from support.contract import event as op

    handle = ray_host.add_service("svc", OpScripted, ServiceConfig(fail_after=None))
    handle.start(timeout=HANG * 4)
    ok, bad = op("echo", 1), op("raise", "posted")
    assert handle.post(ok) == ok.correlation_id
    handle.post(bad)
    assert outcome(handle.submit(op("count")), HANG * 4) == 3
    status = handle.status()
    assert (status.counters.succeeded, status.counters.failed) == (2, 1)
    assert status.last_error.correlation_id == bad.correlation_id
    assert [letter.event for letter in ray_host.dead_letters()] == [bad]
