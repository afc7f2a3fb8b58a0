"""Batched dispatch on Ray: the events queued when the actor is handed work go in
one Ray call (up to ``batch.CALL_MAX`` of them), and each one's outcome comes back
as it ends (issue 13, section 2).

What batches must not change: order, serial dispatch, one outcome per event and
its counters, each event's own deadline, a failure closing the batch (the failed
event ends with its error, the ones after it in the batch come back unrun and are
sent again in order, so each runs once), a stop without drain recalling what had
not begun, and nothing run twice after a crash. Events are handed over together
with ``behind_a_gate``: they queue on the host while a gated event runs.
"""
from __future__ import annotations

import mmap
import os
import sys
import threading
from typing import Any, List

import pytest
from support.backends import TIMEOUT, BackendGates, failure_of, started
from support.contract import event
from support.states import RUNNING, STOPPED
from support.timing import PROCESS_HANG
from support.unloadable import Unloadable

from plugin_service import PluginHost, RestartPolicy, ServiceHandle, errors
from plugin_service._ray.batch import CALL_MAX
from plugin_service._ray.progress import Marker, Record


def behind_a_gate(svc: ServiceHandle, gates: BackendGates, *payloads: Any) -> List[Any]:
    """Submit ``payloads`` while a gated event runs, then open the gate: the
    worker hands them to the actor together. Returns their futures."""
    gate = gates.new()
    held = svc.submit(event("gate", gate))
    assert gate.entered()
    futures = [svc.submit(event(*payload)) for payload in payloads]
    gate.open()
    assert held.result(PROCESS_HANG) == "released"
    return futures


def test_more_events_than_one_call_carries_run_once_each_in_order(
        host: PluginHost, gates: BackendGates) -> None:
    count = CALL_MAX + 44  # two calls' worth, handed over at once
    svc = started(host, queue_size=2 * CALL_MAX)
    futures = behind_a_gate(svc, gates, *[("count",)] * count)
    # OpScripted counts the events it ran: the gated one was the first.
    assert [future.result(PROCESS_HANG) for future in futures] == list(range(2, count + 2))
    counters = svc.status().counters
    assert (counters.dispatched, counters.succeeded) == (count + 1, count + 1)


def test_a_failure_in_the_middle_of_a_batch_fails_only_that_event(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, fail_after=None)
    futures = behind_a_gate(svc, gates, ("count",), ("raise", "boom"), ("count",), ("count",))
    assert futures[0].result(PROCESS_HANG) == 2
    error = failure_of(futures[1])
    assert isinstance(error, errors.DispatchFailed) and isinstance(error.__cause__, ValueError)
    # Sent again after the failure's outcome was recorded; each ran once.
    assert [futures[2].result(PROCESS_HANG), futures[3].result(PROCESS_HANG)] == [4, 5]
    counters = svc.status().counters
    assert (counters.succeeded, counters.failed) == (4, 1)


def test_an_unpicklable_result_in_a_batch_is_that_events_error(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, fail_after=None)
    first, locked, odd, last = behind_a_gate(svc, gates, ("count",), ("lock",),
                                             ("raise_odd",), ("count",))
    assert first.result(PROCESS_HANG) == 2
    error = failure_of(locked)
    assert isinstance(error, errors.DispatchFailed) and "pickle" in str(error.__cause__)
    error = failure_of(odd)
    assert isinstance(error, errors.DispatchFailed) and "OddError" in str(error.__cause__)
    assert last.result(PROCESS_HANG) == 5


def test_an_unpicklable_event_among_a_batch_fails_alone_unseen(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host)  # fail_after=1: a handler failure would fail the service
    first, bad, last = behind_a_gate(svc, gates, ("count",), ("echo", threading.Lock()),
                                     ("count",))
    assert first.result(PROCESS_HANG) == 2
    error = failure_of(bad)
    assert isinstance(error, errors.DispatchFailed) and "could not be sent" in str(error)
    assert last.result(PROCESS_HANG) == 3  # the plugin never saw the bad one
    assert svc.state is RUNNING


def test_an_event_the_actor_cannot_unpickle_fails_alone_and_the_rest_run_once(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, fail_after=None)
    first, bad, last = behind_a_gate(svc, gates, ("count",), ("echo", Unloadable()),
                                     ("count",))
    # Their call could not be unpickled: all three came back unrun, went one
    # per call, and only the bad one failed.
    assert first.result(PROCESS_HANG) == 2
    assert isinstance(failure_of(bad), errors.DispatchFailed)
    assert last.result(PROCESS_HANG) == 3  # the plugin never saw the bad one
    assert svc.status().counters.succeeded == 3


def test_events_of_a_class_from_the_drivers_main_reach_the_plugin_in_a_batch(
        host: PluginHost, gates: BackendGates, monkeypatch: pytest.MonkeyPatch) -> None:
    class Payload:  # as a script's own class: the actor cannot import it
        def __init__(self, number: int) -> None:
            self.number = number

    Payload.__module__, Payload.__qualname__ = "__main__", "Payload"
    monkeypatch.setattr(sys.modules["__main__"], "Payload", Payload, raising=False)
    svc = started(host, fail_after=None)
    futures = behind_a_gate(svc, gates, ("echo", Payload(1)), ("echo", Payload(2)))
    # Pickled by value, as Ray pickles arguments: by reference the actor failed.
    assert [future.result(PROCESS_HANG).number for future in futures] == [1, 2]


def test_a_timeout_inside_a_batch_times_out_that_event_not_the_batchs_first(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, dispatch_timeout=TIMEOUT, fail_after=None)
    blocker = gates.new()
    quick, late, *after = behind_a_gate(svc, gates, ("count",), ("block", blocker),
                                        ("count",), ("count",))
    assert quick.result(PROCESS_HANG) == 2  # ended long before the deadline
    assert isinstance(failure_of(late), errors.DispatchTimeout)
    # Skipped when the timeout closed the batch, then handed over again, in order.
    assert [future.result(PROCESS_HANG) for future in after] == [4, 5]
    assert svc.status().counters.timed_out == 1
    assert svc.submit(event("report")).result(PROCESS_HANG) == [False, True]


def test_stop_without_drain_recalls_the_tail_of_a_batch_that_had_not_begun(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, dispatch_timeout=None)
    blocker = gates.new()
    first, running, *tail = behind_a_gate(svc, gates, ("count",), ("block", blocker),
                                          ("echo", 1), ("echo", 2))
    assert blocker.entered()
    assert first.result(PROCESS_HANG) == 2
    stopping = threading.Thread(target=svc.stop, kwargs={"drain": False, "timeout": TIMEOUT})
    stopping.start()
    for future in tail:  # recalled from the actor unrun, once
        assert isinstance(failure_of(future), errors.ServiceStopped)
    assert running.result(PROCESS_HANG) == "woke"  # cancelled at the stop's bound
    stopping.join(PROCESS_HANG)
    assert svc.state is STOPPED
    counters = svc.status().counters
    assert (counters.succeeded, counters.dropped) == (3, 2)
    assert len(host.dead_letters()) == 2


def test_a_crash_in_the_middle_of_a_batch_runs_what_had_not_begun_on_the_fresh_actor(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, restart=RestartPolicy(max_restarts=3, window=None, backoff=0.0))
    pid = svc.submit(event("pid")).result(PROCESS_HANG)
    before, crashed, *after = behind_a_gate(svc, gates, ("echo", "ran"), ("exit",),
                                            ("pid",), ("echo", "after"))
    outcome = before.exception(PROCESS_HANG)
    if outcome is None:
        assert before.result() == "ran"
    else:  # its reply was lost with the process: said so, never run again
        assert isinstance(outcome.__cause__, errors.PluginCrashed)
        assert "not run again" in str(outcome.__cause__)
    error = failure_of(crashed)
    assert isinstance(error.__cause__, errors.PluginCrashed)
    assert "while it ran" in str(error.__cause__)
    assert after[0].result(PROCESS_HANG) != pid  # on the fresh actor
    assert after[1].result(PROCESS_HANG) == "after"
    assert svc.status().restarts == 1


class _NoRay:
    """Stands in for the ``ray`` module: no runtime context, so no node id."""


def test_the_progress_record_tells_a_skipped_event_from_a_later_one_that_began() -> None:
    record = Record(_NoRay(), slots=8)
    fd = os.open(record.path, os.O_RDWR)
    try:
        marker = Marker(mmap.mmap(fd, os.fstat(fd).st_size), 8)
    finally:
        os.close(fd)
    record.ready(True)
    marker.begin(3)
    marker.end(3)
    marker.begin(5)  # 4 was skipped (its batch closed); 5, a retry, began after it
    assert record.began(3) == (True, True)
    assert record.began(4) == (False, False)  # a high-water mark said "began"
    assert record.began(5) == (True, False)
    marker.begin(13)  # 5's slot, reused by a newer seq: nothing known of 5 any more
    assert record.began(5) is None
    record.release()


@pytest.mark.parametrize("window", [1, 3, 1024])
def test_the_record_has_a_slot_for_every_event_outstanding_at_once(window: int) -> None:
    record = Record(_NoRay(), slots=window + 2)
    try:
        assert os.path.getsize(record.path) == 16 * (window + 2)
    finally:
        record.release()


def test_after_the_host_kills_a_stuck_actor_an_event_that_began_behind_it_is_not_run_again(
        ) -> None:
    # The host timed out event 0 and killed the actor for it, but 0 had ended
    # (its outcome not yet polled) and 1, in the same batch, had begun.
    from plugin_service import ServiceConfig
    from plugin_service._ray.proxy import _ActorProxy

    proxy = _ActorProxy(None, "svc", object, False, ServiceConfig(), window=4)
    proxy._killed, proxy._killed_seq = "killed", 0
    assert proxy._progress(1) is None  # off the node: may have run, not run again
    record = Record(_NoRay(), slots=proxy._slots)
    fd = os.open(record.path, os.O_RDWR)
    try:
        marker = Marker(mmap.mmap(fd, os.fstat(fd).st_size), proxy._slots)
    finally:
        os.close(fd)
    record.ready(True)
    proxy._record = record
    try:
        marker.begin(0)
        marker.end(0)
        marker.begin(1)
        assert proxy._progress(0) == (True, True)
        assert proxy._progress(1) == (True, False)  # the guess said "never began"
        assert proxy._progress(2) == (False, False)
        assert not proxy._unrun_after_crash(0)  # the first carries the crash
        assert not proxy._unrun_after_crash(1)  # began: fails, never re-sent
        assert proxy._unrun_after_crash(2)  # never began: goes to the fresh actor
    finally:
        record.release()
