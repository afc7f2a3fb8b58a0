"""What a source does with an item its service has no room for, or cannot take:
block (back-pressure), drop_newest, drop_oldest; and reading only while the
service is RUNNING."""
from __future__ import annotations

import threading

import pytest
from support.checks import assert_invariants, wait_until
from support.doubles import INGRESS, Blocking, Echo, Recorder, event
from support.sources import AckingSource, FedSource, assert_source_invariant, settled
from support.timing import HANG

from plugin_service import ServiceConfig, SourceState


class Metered(Recorder):
    """Handles one event per permit the test releases."""

    def __init__(self) -> None:
        super().__init__()
        self.permits = threading.Semaphore(0)

    def behave(self, event, ctx):
        assert self.permits.acquire(timeout=HANG)
        return event.payload


def _started(host, plugin, **config):
    handle = host.add_service("svc", plugin, ServiceConfig(**config))
    handle.start(timeout=HANG)
    return handle


def test_block_stops_reading_while_the_queue_is_full(host):
    plugin = Metered()
    service = _started(host, plugin, queue_size=2)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(*range(20))
    # One in flight, two queued, one held by the reader, which then reads no more.
    wait_until(lambda: handle.status().received == 4 and service.status().queue_depth == 2)
    for handled in range(20):
        status = handle.status()
        assert status.received <= handled + 1 + 2 + 1, status  # in flight, queue, held
        assert source.feed.qsize() >= 20 - (handled + 4)
        assert_source_invariant(status)
        plugin.permits.release()
        wait_until(lambda: len(plugin.payloads) > handled)
    wait_until(lambda: service.status().counters.succeeded == 20)
    assert plugin.payloads == list(range(20))
    status = handle.status()
    assert (status.received, status.submitted, status.dropped) == (20, 20, 0)
    assert service.status().counters.rejected == 0  # waiting for room is no rejection
    assert_invariants(service.status())


def _one_in_flight(host, gates, overflow, source):
    plugin = Blocking(gates.new())
    service = _started(host, plugin, queue_size=2)
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS,
                             overflow=overflow)
    source.put(0)
    assert plugin.entered().payload == 0
    return plugin, service, handle


def test_drop_newest_drops_what_finds_no_room_and_counts_it(host, gates):
    source = FedSource()
    plugin, service, handle = _one_in_flight(host, gates, "drop_newest", source)
    source.put(*range(1, 10))
    status = settled(handle, 10)
    assert (status.submitted, status.dropped, status.rejected) == (3, 7, 0)
    plugin.gate.set()
    wait_until(lambda: service.status().counters.succeeded == 3)
    assert plugin.payloads == [0, 1, 2]
    counters = service.status().counters
    assert (counters.enqueued, counters.dropped, counters.rejected) == (3, 0, 0)
    assert_invariants(service.status())


def test_drop_oldest_withdraws_the_oldest_queued_event_and_cancels_it(host, gates):
    source = AckingSource()
    plugin, service, handle = _one_in_flight(host, gates, "drop_oldest", source)
    source.put(*range(1, 10))
    status = settled(handle, 10)
    # Every item was queued; 1..7 were withdrawn in turn by a newer one.
    assert (status.submitted, status.dropped, status.rejected) == (10, 0, 0)
    wait_until(lambda: len(source.acks) == 7)
    assert sorted(source.acks) == [(n, "cancelled") for n in range(1, 8)]
    counters = service.status().counters
    assert (counters.enqueued, counters.dropped) == (10, 7)
    assert_invariants(service.status())
    plugin.gate.set()
    wait_until(lambda: len(source.acks) == 10)
    assert plugin.payloads == [0, 8, 9]
    assert set(source.acks) == {(n, "cancelled") for n in range(1, 8)} | {
        (0, 0), (8, 8), (9, 9)}


def test_drop_oldest_with_nothing_of_its_own_queued_drops_the_new_item(host, gates):
    plugin = Blocking(gates.new())
    service = _started(host, plugin, queue_size=1)
    service.submit(event(0))
    plugin.entered()
    service.submit(event(1))  # the queue is full of someone else's event
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS,
                             overflow="drop_oldest")
    source.put(2)
    status = settled(handle, 1)
    assert (status.submitted, status.dropped) == (0, 1)
    assert service.status().counters.dropped == 0


@pytest.mark.parametrize("overflow", ["block", "drop_newest", "drop_oldest"])
def test_a_source_reads_only_while_its_service_runs(host, overflow):
    plugin = Echo()
    service = _started(host, plugin)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS,
                             overflow=overflow)
    source.put(1)
    assert plugin.entered().payload == 1
    service.stop(timeout=HANG)
    source.put(*range(2, 12))
    service.restart(timeout=HANG)
    status = settled(handle, 11)
    wait_until(lambda: service.status().counters.succeeded == status.submitted)
    assert service.status().counters.rejected == 0  # nothing offered while stopped
    assert status.submitted + status.dropped == 11
    if overflow == "block":  # it waited for the restart: nothing lost
        assert plugin.payloads == list(range(1, 12))
    else:  # at most the one item read as the service stopped is dropped
        assert status.dropped <= 1
        assert plugin.payloads == [n for n in range(1, 12) if n in plugin.payloads]
    assert handle.status().state is SourceState.OPEN


@pytest.mark.parametrize("overflow", ["block", "drop_newest", "drop_oldest"])
def test_every_snapshot_during_a_burst_keeps_the_source_invariant(host, overflow):
    service = _started(host, Echo(), queue_size=4)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS,
                             overflow=overflow)
    source.put(*range(3000))

    def checked_snapshot():
        status = handle.status()
        assert_source_invariant(status)
        assert_invariants(service.status())
        return status.received == 3000

    wait_until(checked_snapshot, what="3000 items read, every snapshot checked")
    status = settled(handle, 3000)
    wait_until(lambda: service.status().counters.enqueued == (
        service.status().counters.succeeded + service.status().counters.dropped))
    counters = service.status().counters
    assert counters.enqueued == status.submitted
    assert status.submitted + status.dropped + status.rejected == 3000
