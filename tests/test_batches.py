"""``submit_many`` and ``post_many``: validated one by one, accepted in order under
as few lock holds as the queue's room allows; what does not fit (or is invalid) is
rejected each with its own typed error, carried by ``BatchRejected``, and nothing
accepted is lost."""
from __future__ import annotations

import threading
from typing import List

import pytest
from support.checks import assert_invariants, outcome, wait_until
from support.doubles import Blocking, Echo, Recorder, event
from support.timing import HANG

from plugin_service import DiagnosticKind, DispatchFuture, PluginHost, ServiceConfig, errors


def _blocked(gates, start_service, queue_size):
    """A service of ``queue_size`` whose handler holds event 0 until the gate opens."""
    gate = gates.new()
    plugin = Blocking(gate)
    handle = start_service("svc", plugin, queue_size=queue_size, fail_after=None)
    handle.post(event(0))
    plugin.entered()
    return handle, plugin, gate


def test_submit_many_returns_a_future_per_event_and_keeps_their_order(start_service):
    plugin = Echo()
    handle = start_service("svc", plugin, queue_size=16)
    futures = handle.submit_many([event(i) for i in range(10)])
    assert all(isinstance(f, DispatchFuture) for f in futures)
    assert [f.result(timeout=HANG) for f in futures] == list(range(10))
    assert plugin.payloads == list(range(10))


def test_post_many_returns_the_correlation_ids_in_order(start_service):
    plugin = Echo()
    handle = start_service("svc", plugin, queue_size=16)
    events = [event(i) for i in range(10)]
    assert handle.post_many(events) == [e.correlation_id for e in events]
    handle.stop(timeout=HANG)
    assert plugin.payloads == list(range(10))
    assert handle.status().counters.succeeded == 10


def test_an_empty_batch_is_an_empty_list(start_service):
    handle = start_service("svc", Echo())
    assert handle.submit_many([]) == []
    assert handle.post_many(iter(())) == []
    assert handle.status().counters.enqueued == 0


@pytest.mark.parametrize("call", ["submit_many", "post_many"])
def test_what_does_not_fit_is_queue_full_and_the_rest_is_accepted(gates, start_service, call):
    handle, plugin, gate = _blocked(gates, start_service, queue_size=3)
    events = [event(i) for i in range(1, 6)]
    with pytest.raises(errors.BatchRejected) as raised:
        getattr(handle, call)(events)
    rejected = raised.value
    assert [index for index, _ in rejected.rejected] == [3, 4]
    assert all(isinstance(error, errors.QueueFull) and error.capacity == 3
               for _, error in rejected.rejected)
    assert rejected.results[3:] == [error for _, error in rejected.rejected]
    accepted = rejected.accepted
    assert len(accepted) == 3 and rejected.results[:3] == accepted
    if call == "post_many":
        assert accepted == [e.correlation_id for e in events[:3]]
    else:
        assert [f.event for f in accepted] == events[:3]
    status = handle.status()
    assert (status.counters.enqueued, status.counters.rejected) == (4, 2)
    assert status.last_error.kind is DiagnosticKind.QUEUE_FULL
    assert status.last_error.correlation_id == events[4].correlation_id
    assert_invariants(status)
    gate.set()
    handle.stop(timeout=HANG)
    assert plugin.payloads == [0, 1, 2, 3]  # nothing accepted is lost


def test_an_invalid_event_is_rejected_in_its_place_and_the_others_go_in(start_service):
    plugin = Echo()
    handle = start_service("svc", plugin, queue_size=16)
    batch = [event(1), "not an event", event(3), event(4, ingress="nope"), event(5)]
    with pytest.raises(errors.BatchRejected) as raised:
        handle.submit_many(batch)
    results = raised.value.results
    assert isinstance(results[1], errors.InvalidEvent)
    assert isinstance(results[3], errors.InvalidEvent) and "nope" in results[3].reason
    assert [outcome(results[i]) for i in (0, 2, 4)] == [1, 3, 5]
    assert [index for index, _ in raised.value.rejected] == [1, 3]
    handle.stop(timeout=HANG)
    assert plugin.payloads == [1, 3, 5]
    counters = handle.status().counters
    assert (counters.enqueued, counters.rejected, counters.succeeded) == (3, 2, 3)


def test_the_message_says_how_many_and_why(gates, start_service):
    handle, _, _ = _blocked(gates, start_service, queue_size=1)
    with pytest.raises(errors.BatchRejected) as raised:
        handle.post_many([event(1), event(2), "bad"])
    text = str(raised.value)
    assert "2 of 3" in text and "queue_full" in text and "invalid_event" in text
    assert raised.value.service == "svc"
    assert raised.value.kind is DiagnosticKind.BATCH_REJECTED


@pytest.mark.parametrize("call", ["submit_many", "post_many"])
def test_a_batch_to_a_service_not_running_is_rejected_whole(host, call):
    handle = host.add_service("svc", Echo(), ServiceConfig())
    with pytest.raises(errors.BatchRejected) as raised:
        getattr(handle, call)([event(1), "not an event even"])
    assert all(isinstance(r, errors.ServiceUnavailable) for r in raised.value.results)
    assert raised.value.accepted == []
    assert handle.status().counters.rejected == 2


def test_with_block_the_batch_waits_for_room_and_all_of_it_goes_in(
        gates, background, start_service):
    handle, plugin, gate = _blocked(gates, start_service, queue_size=2)
    batch = [event(i) for i in range(1, 8)]
    waiting = background(handle.post_many, batch, block=True, timeout=HANG)
    gate.set()
    assert waiting.result(timeout=HANG) == [e.correlation_id for e in batch]
    handle.stop(timeout=HANG)
    assert plugin.payloads == list(range(8))
    assert handle.status().counters.rejected == 0


def test_with_block_and_a_timeout_the_rest_is_queue_full_after_the_timeout(
        gates, start_service):
    handle, plugin, gate = _blocked(gates, start_service, queue_size=2)
    with pytest.raises(errors.BatchRejected) as raised:
        handle.submit_many([event(i) for i in range(1, 5)], block=True, timeout=0.05)
    assert [type(r).__name__ for r in raised.value.results] == [
        "DispatchFuture", "DispatchFuture", "QueueFull", "QueueFull"]
    gate.set()
    assert [outcome(f) for f in raised.value.accepted] == [1, 2]


def test_a_service_stopping_while_a_batch_waits_rejects_the_rest_as_stopped(
        gates, background, start_service):
    handle, plugin, gate = _blocked(gates, start_service, queue_size=1)
    waiting = background(handle.submit_many, [event(1), event(2), event(3)],
                         block=True, timeout=HANG)
    # The first event fits; the batch then waits for room for the second, in the
    # same lock hold that queued the first, so once status() shows it queued the
    # batch is parked.
    wait_until(lambda: handle.status().queue_depth == 1, what="the first event queued")
    stop = background(handle.stop, timeout=HANG)
    with pytest.raises(errors.BatchRejected) as raised:
        waiting.result(timeout=HANG)
    assert [type(r).__name__ for r in raised.value.results] == [
        "DispatchFuture", "ServiceStopped", "ServiceStopped"]
    gate.set()
    stop.result(timeout=HANG)
    assert outcome(raised.value.results[0]) == 1  # drained: accepted, so handled
    assert plugin.payloads == [0, 1]


def test_a_batch_that_fits_is_queued_under_one_lock_hold(host, background):
    """Two producers' batches are never interleaved when both fit."""
    plugin = Recorder()
    handle = host.add_service("svc", plugin, ServiceConfig(queue_size=10_000))
    handle.start(timeout=HANG)
    barrier = threading.Barrier(2)

    def produce(producer: int) -> None:
        barrier.wait(HANG)
        for batch in range(20):
            handle.post_many([event((producer, batch, i)) for i in range(50)])

    for future in [background(produce, p) for p in range(2)]:
        future.result(timeout=HANG)
    handle.stop(timeout=HANG)
    runs: List[tuple] = []
    for producer, batch, i in plugin.payloads:
        if i == 0:
            runs.append((producer, batch))
        assert runs[-1] == (producer, batch), "batches interleaved"
    assert sorted(runs) == [(p, b) for p in range(2) for b in range(20)]


def test_a_batch_from_the_services_own_handler_never_waits_on_itself(host):
    results: List[BaseException] = []

    class Relay(Recorder):
        def behave(self, ev, ctx):
            if ev.payload == "relay":
                try:
                    self.handle.post_many([event(1), event(2)], block=True, timeout=HANG)
                except errors.BatchRejected as exc:
                    results.append(exc)
            return ev.payload

    plugin = Relay()
    handle = host.add_service("svc", plugin, ServiceConfig(queue_size=1))
    plugin.handle = handle
    handle.start(timeout=HANG)
    assert outcome(handle.submit(event("relay"))) == "relay"
    [rejected] = results
    assert [type(r).__name__ for r in rejected.results] == ["str", "QueueFull"]


def test_a_batch_of_an_inherited_host_is_host_forked(start_service):
    handle = start_service("svc", Echo())
    handle._forked_from = 1
    try:
        with pytest.raises(errors.HostForked):
            handle.submit_many([event(1)])
    finally:
        handle._forked_from = 0


def test_batches_work_on_the_ray_backend(ray_host: PluginHost):
    from support.contract import OpScripted
    from support.contract import event as op

    handle = ray_host.add_service("svc", OpScripted, ServiceConfig(fail_after=None))
    handle.start(timeout=HANG * 4)
    futures = handle.submit_many([op("echo", i) for i in range(5)] + [op("raise", "x")])
    assert [outcome(f, HANG * 4) for f in futures[:5]] == list(range(5))
    assert isinstance(outcome(futures[5], HANG * 4), errors.DispatchFailed)
    handle.post_many([op("echo", i) for i in range(3)])
    assert outcome(handle.submit(op("count")), HANG * 4) == 10


def test_an_empty_batch_to_a_service_not_running_is_an_empty_list(host):
    handle = host.add_service("svc", Echo(), ServiceConfig())  # READY
    assert handle.submit_many([]) == [] and handle.post_many([]) == []
    assert handle.status().counters.rejected == 0


def test_every_refused_event_gets_an_error_of_its_own(gates, start_service):
    handle, _, _ = _blocked(gates, start_service, queue_size=1)
    with pytest.raises(errors.BatchRejected) as raised:
        handle.post_many([event(1), event(2), event(3), "bad", event(5)])
    refused = [error for _, error in raised.value.rejected]
    assert [type(e).__name__ for e in refused] == [
        "QueueFull", "QueueFull", "InvalidEvent", "QueueFull"]
    assert len({id(e) for e in refused}) == 4
    assert all(e.capacity == 1 and e.service == "svc" for e in refused
               if isinstance(e, errors.QueueFull))


def test_batch_rejected_survives_copy_and_pickle():
    import copy
    import pickle

    made = errors.BatchRejected(
        ["cid-1", errors.ServiceStopped("stopped", service="s", state=None)], service="s")
    for again in (copy.copy(made), copy.deepcopy(made), pickle.loads(pickle.dumps(made))):
        assert str(again) == str(made) and again.service == "s"
        assert again.accepted == ["cid-1"] and [i for i, _ in again.rejected] == [1]
