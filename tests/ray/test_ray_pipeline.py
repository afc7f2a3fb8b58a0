"""The Ray backend's pipeline: events handed to the actor ahead of their turn.

The worker sends up to ``RayBackend(pipeline=...)`` events (by default the queue
size) before the first one returns; the actor runs them one at a time, in order.
These tests pin down what that must not change: order, serial dispatch, retry
before the next event, nothing run after a failure or a stop without drain, and
exactly one recorded outcome per event (the ``host`` fixture checks the counters
of every service before and after close).

Events are held with gates, never with sleeps: while the event in flight waits
at a gate, the events submitted behind it wait in the host's queue; when it
returns, the worker hands all of them to the actor at once.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, List

import pytest
from support.backends import (
    TIMEOUT,
    BackendGates,
    RaySession,
    checked_host,
    exits_within,
    failure_of,
    started,
)
from support.contract import event
from support.states import FAILED, RUNNING, STOPPED
from support.timing import PROCESS_HANG

from plugin_service import (
    DiagnosticKind,
    PluginHost,
    RayBackend,
    RetryPolicy,
    ServiceHandle,
    errors,
)


def behind_a_gate(svc: ServiceHandle, gates: BackendGates, *payloads: Any) -> List[Any]:
    """Submit ``payloads`` while a gated event is in flight, then open the gate:
    the worker hands them to the actor together. Returns their futures."""
    gate = gates.new()
    held = svc.submit(event("gate", gate))
    assert gate.entered()
    futures = [svc.submit(event(*payload)) for payload in payloads]
    gate.open()
    assert held.result(PROCESS_HANG) == "released"
    return futures


def test_events_sent_ahead_run_one_at_a_time_in_submission_order(host: PluginHost,
                                                                 gates: BackendGates) -> None:
    svc = started(host, queue_size=64)
    futures = behind_a_gate(svc, gates, *[("count",)] * 60)
    # OpScripted counts the events it handled: the gated one was the first.
    assert [future.result(PROCESS_HANG) for future in futures] == list(range(2, 62))
    status = svc.status()
    assert (status.counters.dispatched, status.counters.succeeded) == (61, 61)


def test_an_event_handed_to_the_actor_can_no_longer_be_withdrawn(host: PluginHost,
                                                                 gates: BackendGates) -> None:
    svc = started(host, dispatch_timeout=None)
    blocker = gates.new()
    first, *rest = behind_a_gate(svc, gates, ("block", blocker), ("echo", 1), ("echo", 2))
    assert blocker.entered()  # taken together with the two behind it
    assert not rest[-1].cancel()  # already in the actor's hands
    assert not rest[-1].cancelled()
    pending = svc.submit(event("echo", 3))  # still in the host's queue
    assert pending.cancel()
    svc.stop(timeout=TIMEOUT)  # at the bound: the blocker cancelled, the rest dropped
    assert first.result(PROCESS_HANG) == "woke"
    for future in rest:  # recalled from the actor unrun, as from the host's queue
        assert isinstance(failure_of(future), errors.ServiceStopped)


def test_a_failure_that_fails_the_service_runs_nothing_sent_after_it(host: PluginHost,
                                                                       gates: BackendGates) -> None:
    svc = started(host)  # fail_after=1
    failing, *after = behind_a_gate(svc, gates, ("raise", "boom"), ("count",), ("count",))
    assert isinstance(failure_of(failing), errors.DispatchFailed)
    for future in after:  # a result would mean the actor ran it
        assert isinstance(failure_of(future), errors.ServiceFailed)
    status = svc.status()
    assert status.state is FAILED
    assert (status.counters.failed, status.counters.dropped) == (1, 2)
    assert status.queue_depth == 0
    kinds = [letter.diagnostic.kind for letter in host.dead_letters()]
    assert kinds == [DiagnosticKind.DISPATCH_FAILED] + [DiagnosticKind.SERVICE_FAILED] * 2


def test_without_fail_after_a_failure_does_not_hold_up_the_events_behind_it(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, fail_after=None)
    futures = behind_a_gate(svc, gates, ("raise", "boom"), ("count",), ("raise", "b"),
                            ("count",))
    assert isinstance(failure_of(futures[0]), errors.DispatchFailed)
    assert futures[1].result(PROCESS_HANG) == 3
    assert isinstance(failure_of(futures[2]), errors.DispatchFailed)
    assert futures[3].result(PROCESS_HANG) == 5
    assert svc.status().counters.failed == 2


def test_a_retry_runs_before_the_events_sent_after_it(host: PluginHost,
                                                      gates: BackendGates) -> None:
    svc = started(host, retry=RetryPolicy(max_attempts=3, backoff=0.0))
    retried, after = behind_a_gate(svc, gates, ("fail_before", 2), ("count",))
    assert retried.result(PROCESS_HANG) == 2  # its second attempt succeeded
    # gate (1), the failed attempt (2), the retry (3), then this one.
    assert after.result(PROCESS_HANG) == 4
    assert svc.status().counters.retried == 1


def test_a_timed_out_event_sends_the_ones_behind_it_again_in_order(host: PluginHost,
                                                                   gates: BackendGates) -> None:
    svc = started(host, dispatch_timeout=TIMEOUT, fail_after=None)
    blocker = gates.new()
    late, *after = behind_a_gate(svc, gates, ("block", blocker), ("count",), ("count",))
    assert isinstance(failure_of(late), errors.DispatchTimeout)
    # Skipped when the timeout closed their batch, then handed over again.
    assert [future.result(PROCESS_HANG) for future in after] == [3, 4]
    report = svc.submit(event("report")).result(PROCESS_HANG)
    assert report == [False, True]  # the gate, then the blocker saw ctx.cancelled


def test_stop_without_drain_recalls_what_was_sent_ahead(host: PluginHost,
                                                        gates: BackendGates) -> None:
    svc = started(host, dispatch_timeout=None)
    blocker = gates.new()
    running, *ahead = behind_a_gate(svc, gates, ("block", blocker), ("echo", 1), ("echo", 2))
    assert blocker.entered()
    assert svc.status().queue_depth == 2  # in the actor, still counted as queued
    done = threading.Event()
    stopping = threading.Thread(target=lambda: (svc.stop(drain=False, timeout=TIMEOUT),
                                                done.set()))
    stopping.start()
    for future in ahead:
        assert isinstance(failure_of(future), errors.ServiceStopped)
    assert running.result(PROCESS_HANG) == "woke"  # cancelled at the stop bound, returned
    stopping.join(PROCESS_HANG)
    assert done.is_set() and svc.state is STOPPED
    assert svc.status().counters.dropped == 2


def test_pipeline_one_sends_one_event_at_a_time(ray_session: RaySession,
                                                gates: BackendGates) -> None:
    with checked_host(RayBackend(pipeline=1), gates) as plugin_host:
        svc = started(plugin_host)
        blocker = gates.new()
        first, second = behind_a_gate(svc, gates, ("block", blocker), ("echo", 2))
        assert blocker.entered()
        assert second.cancel()  # never handed over while the first runs
        svc.stop(timeout=TIMEOUT)
        assert first.result(PROCESS_HANG) == "woke"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_pipeline_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="pipeline"):
        RayBackend(pipeline=bad)


def test_an_unpicklable_event_does_not_count_toward_fail_after(host: PluginHost) -> None:
    svc = started(host)  # fail_after=1: a handler failure would fail the service
    error = failure_of(svc.submit(event("echo", threading.Lock())))
    assert isinstance(error, errors.DispatchFailed)
    assert "could not be sent" in str(error)
    assert svc.state is RUNNING
    assert svc.submit(event("count")).result(PROCESS_HANG) == 1


def test_stuck_handler_without_a_deadline_is_killed_after_the_stop_grace(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, dispatch_timeout=None, cancel_grace=TIMEOUT)
    pid = svc.submit(event("pid")).result(PROCESS_HANG)
    stuck = gates.new()  # "gate" ignores cancellation; nobody opens this one
    future = svc.submit(event("gate", stuck))
    assert stuck.entered()
    with pytest.raises(errors.ServiceFailed):
        svc.stop(timeout=TIMEOUT)
    assert isinstance(failure_of(future), errors.DispatchTimeout)
    assert exits_within(pid, PROCESS_HANG)  # killed, although its gate never opened


def test_a_service_failed_by_its_events_cleans_up_and_ends_its_actor(
        ray_session: RaySession, gates: BackendGates) -> None:
    with checked_host(RayBackend(), gates) as plugin_host:
        svc = started(plugin_host)
        pid = svc.submit(event("pid")).result(PROCESS_HANG)
        assert pid != os.getpid()
        failure_of(svc.submit(event("raise", "boom")))
        assert svc.state is FAILED
        # The plugin's cleanup (stop(): OpScripted has no on_failure) runs in its
        # actor, then the actor goes: nothing acquired by start() outlives the life.
        assert exits_within(pid, PROCESS_HANG)


def test_after_a_retry_nothing_new_overtakes_the_events_skipped_behind_it(
        ray_session: RaySession, gates: BackendGates) -> None:
    # pipeline=3: the retried event and the two behind it are handed over; the
    # last two wait on the host and must not be sent before the skipped two.
    with checked_host(RayBackend(pipeline=3), gates) as plugin_host:
        svc = started(plugin_host, retry=RetryPolicy(max_attempts=2, backoff=0.0))
        retried, *after = behind_a_gate(svc, gates, ("fail_before", 2), *[("count",)] * 4)
        assert retried.result(PROCESS_HANG) == 2
        assert [future.result(PROCESS_HANG) for future in after] == [4, 5, 6, 7]


def test_an_event_sent_ahead_is_timed_from_its_turn_not_from_its_sending(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, latency_histograms=True)
    held = 0.3  # how long each gated handler is known to run, at least
    first, second = gates.new(), gates.new()
    head = svc.submit(event("gate", first))
    assert first.entered()
    behind = [svc.submit(event("gate", second)), svc.submit(event("echo", "sent ahead"))]
    time.sleep(held)  # a known lower bound, not a synchronisation
    first.open()  # both behind are handed to the actor together
    assert second.entered()
    time.sleep(held)
    second.open()
    assert [future.result(PROCESS_HANG) for future in [head] + behind] == [
        "released", "released", "sent ahead"]
    run = svc.status().handler_time
    assert run is not None and run.count == 3
    # The echo's turn began when the gated one before it returned: it is the only
    # short one, although it was sent at the same moment as that one.
    assert max(n for bound, n in run.buckets if bound <= held / 2) == 1, run
