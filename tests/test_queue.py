"""The bounded ingress queue and the state checks of submit."""
from __future__ import annotations

import pytest
from support.doubles import Blocking, BlockingStart, Echo, Raising, event
from support.states import FAILED, READY, STARTING, STOPPED, STOPPING
from support.timing import HANG

from plugin_service import DiagnosticKind, DispatchFuture, errors


@pytest.fixture
def full(start_service, gates):
    """A RUNNING service with one event in flight (blocked) and a full queue of 2."""
    plugin = Blocking(gates.new())
    handle = start_service("svc", plugin, queue_size=2)
    in_flight = handle.submit(event("in flight"))
    plugin.entered()
    queued = [handle.submit(event("queued-1")), handle.submit(event("queued-2"))]
    return handle, plugin, in_flight, queued


def test_full_queue_rejects_with_capacity(full):
    handle, _, _, _ = full
    with pytest.raises(errors.QueueFull) as raised:
        handle.submit(event("one too many"))
    assert raised.value.capacity == 2
    assert raised.value.kind is DiagnosticKind.QUEUE_FULL


def test_queue_full_rejection_is_counted_and_recorded(full):
    handle, _, _, _ = full
    rejected = event("one too many")
    with pytest.raises(errors.QueueFull):
        handle.submit(rejected)
    status = handle.status()
    assert status.counters.rejected == 1
    assert status.last_error.kind is DiagnosticKind.QUEUE_FULL
    assert status.last_error.correlation_id == rejected.correlation_id
    assert status.diagnostics[-1] == status.last_error


def test_queue_full_rejection_is_not_enqueued(full):
    handle, plugin, in_flight, queued = full
    with pytest.raises(errors.QueueFull):
        handle.submit(event("one too many"))
    status = handle.status()
    assert status.counters.enqueued == 3
    assert status.queue_depth == 2
    plugin.gate.set()
    for future in [in_flight] + queued:
        future.result(timeout=HANG)
    assert plugin.payloads == ["in flight", "queued-1", "queued-2"]


def test_status_reports_queue_depth_and_capacity(full):
    handle, _, _, _ = full
    status = handle.status()
    assert (status.queue_depth, status.queue_capacity, status.in_flight) == (2, 2, 1)


def test_blocking_submit_times_out_with_queue_full(full):
    handle, _, _, _ = full
    with pytest.raises(errors.QueueFull) as raised:
        handle.submit(event("waits"), block=True, timeout=0.05)
    assert raised.value.capacity == 2
    assert handle.status().counters.rejected == 1


def test_blocking_submit_is_accepted_once_room_frees(full, background):
    handle, plugin, _, _ = full
    submitted = background(handle.submit, event("waits"), block=True, timeout=HANG)
    plugin.gate.set()
    assert submitted.result(timeout=HANG).result(timeout=HANG) == "waits"
    assert handle.status().counters.rejected == 0


def test_submit_returns_dispatch_future_carrying_the_event(start_service):
    handle = start_service("svc", Echo())
    submitted = event("x")
    future = handle.submit(submitted)
    assert isinstance(future, DispatchFuture)
    assert future.event is submitted
    assert future.result(timeout=HANG) == "x"


def test_host_submit_routes_to_named_service(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    assert host.submit("svc", event("routed")).result(timeout=HANG) == "routed"
    assert plugin.payloads == ["routed"]


def test_submit_while_ready_raises_service_unavailable(host):
    handle = host.add_service("svc", Echo())
    with pytest.raises(errors.ServiceUnavailable) as raised:
        handle.submit(event(1))
    assert raised.value.state is READY


def test_submit_while_starting_raises_service_unavailable(host, gates, background):
    plugin = BlockingStart(gates.new())
    handle = host.add_service("svc", plugin)
    background(handle.start, HANG)
    assert plugin.in_start.wait(HANG)
    with pytest.raises(errors.ServiceUnavailable) as raised:
        handle.submit(event(1))
    assert raised.value.state is STARTING


def test_submit_while_stopping_raises_service_stopped(start_service, gates, background):
    plugin = Blocking(gates.new())
    handle = start_service("svc", plugin)
    handle.submit(event("in flight"))
    plugin.entered()
    background(handle.stop, timeout=HANG)
    assert handle.wait_for(STOPPING, timeout=HANG)
    with pytest.raises(errors.ServiceStopped) as raised:
        handle.submit(event("late"))
    assert raised.value.state is STOPPING


def test_submit_while_stopped_raises_service_stopped(start_service):
    handle = start_service("svc", Echo())
    handle.stop(timeout=HANG)
    with pytest.raises(errors.ServiceStopped) as raised:
        handle.submit(event(1))
    assert raised.value.state is STOPPED


def test_submit_while_failed_raises_service_failed(start_service):
    handle = start_service("svc", Raising())
    with pytest.raises(errors.DispatchFailed):
        handle.submit(event(1)).result(timeout=HANG)
    with pytest.raises(errors.ServiceFailed) as raised:
        handle.submit(event(2))
    assert raised.value.state is FAILED


def test_state_rejection_is_counted_recorded_and_not_enqueued(host):
    handle = host.add_service("svc", Echo())
    rejected = event(1)
    with pytest.raises(errors.ServiceUnavailable):
        handle.submit(rejected)
    status = handle.status()
    assert status.counters.rejected == 1
    assert status.counters.enqueued == 0
    assert status.last_error.kind is DiagnosticKind.SERVICE_UNAVAILABLE
    assert status.last_error.correlation_id == rejected.correlation_id


def test_stopped_rejection_is_recorded_as_service_stopped(start_service):
    handle = start_service("svc", Echo())
    handle.stop(timeout=HANG)
    with pytest.raises(errors.ServiceStopped):
        handle.submit(event(1))
    assert handle.status().last_error.kind is DiagnosticKind.SERVICE_STOPPED


def test_failed_rejection_is_recorded_as_service_failed(start_service):
    handle = start_service("svc", Raising())
    with pytest.raises(errors.DispatchFailed):
        handle.submit(event(1)).result(timeout=HANG)
    with pytest.raises(errors.ServiceFailed):
        handle.submit(event(2))
    status = handle.status()
    assert status.last_error.kind is DiagnosticKind.SERVICE_FAILED
    assert status.counters.rejected == 1
