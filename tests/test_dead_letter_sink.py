"""PluginHost(dead_letter_sink=...): every dead letter handed to the sink on a host
thread, a full backlog counted, a failing sink retried with backoff, all in status."""
from __future__ import annotations

import pytest
from support.doubles import Blocking, event
from support.letters import BlockedSink, FailingSink
from support.timing import HANG

from plugin_service import (
    DeadLetter,
    DeadLetterSinkStatus,
    Ingress,
    IngressEvent,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    errors,
)
from plugin_service._letters import sink as sink_module

pytestmark = pytest.mark.timeout(60)


class Failing(ServicePlugin):
    ingresses = (Ingress("in"),)

    def handle_ingress(self, event, ctx):
        raise RuntimeError("no %s" % (event.payload,))


def _fail(host: PluginHost, count: int) -> None:
    """``count`` events that fail on service "svc" (added and started here)."""
    host.add_service("svc", Failing, ServiceConfig(fail_after=None, queue_size=count))
    host.start_all(timeout=HANG)
    futures = [host.submit("svc", IngressEvent("in", "test", n)) for n in range(count)]
    for future in futures:
        assert isinstance(future.exception(timeout=HANG), errors.DispatchFailed)


def test_without_a_sink_status_has_none():
    with PluginHost() as host:
        assert host.status().dead_letter_sink is None
        assert host.status().to_dict()["dead_letter_sink"] is None


def test_a_sink_without_write_is_refused():
    with pytest.raises(TypeError, match="write"):
        PluginHost(dead_letter_sink=object())
    with pytest.raises(ValueError):
        PluginHost(dead_letter_sink=BlockedSink(), dead_letter_sink_backlog=0)


def test_every_dead_letter_reaches_the_sink_in_order():
    sink = BlockedSink()
    sink.release()
    host = PluginHost(dead_letter_sink=sink)
    _fail(host, 3)
    host.close(timeout=HANG)  # writes what is pending
    assert [letter.event.payload for letter in sink.written] == [0, 1, 2]
    assert all(type(letter) is DeadLetter for letter in sink.written)
    status = host.status().dead_letter_sink
    assert (status.written, status.pending, status.overflow, status.failed) == (3, 0, 0, 0)


def test_a_blocked_sink_slows_no_worker_and_its_overflow_is_counted():
    sink = BlockedSink()
    host = PluginHost(dead_letter_sink=sink, dead_letter_sink_backlog=2)
    try:
        # Every event settles while the sink is stuck in its first write: the
        # letter being written and one more wait, the other three overflow.
        _fail(host, 5)
        assert sink.entered.wait(HANG)
        status = host.status().dead_letter_sink
        assert isinstance(status, DeadLetterSinkStatus)
        assert (status.capacity, status.pending, status.overflow, status.written) == (2, 2, 3, 0)
        assert status.dropped == 3
        assert host.status().to_dict()["dead_letter_sink"]["overflow"] == 3
        assert len(host.dead_letters()) == 5  # the host's own box keeps them all
    finally:
        sink.release()
        host.close(timeout=HANG)
    status = host.status().dead_letter_sink
    assert (status.written, status.overflow, status.pending) == (2, 3, 0)
    assert len(sink.written) == 2


def test_a_failing_sink_is_retried_with_backoff_and_reported_redacted():
    sink = FailingSink(failures=2)
    host = PluginHost(dead_letter_sink=sink)
    _fail(host, 1)
    host.close(timeout=HANG)
    status = host.status().dead_letter_sink
    assert (status.written, status.retries, status.failed) == (1, 2, 0)
    assert "disk full" in status.last_error and "s3cr3t" not in status.last_error
    gaps = [b - a for a, b in zip(sink.calls, sink.calls[1:])]
    # Exponential: at least BACKOFF, then at least twice that (lower bounds only).
    assert gaps[0] >= sink_module.BACKOFF * 0.9
    assert gaps[1] >= 2 * sink_module.BACKOFF * 0.9


def test_a_sink_that_always_fails_gives_the_letter_up_counted():
    sink = FailingSink(failures=1000)
    host = PluginHost(dead_letter_sink=sink)
    _fail(host, 1)
    host.close(timeout=HANG)
    status = host.status().dead_letter_sink
    assert len(sink.calls) == sink_module.WRITE_ATTEMPTS
    assert (status.written, status.failed, status.retries) == (
        0, 1, sink_module.WRITE_ATTEMPTS - 1)
    assert status.dropped == 1
    assert "s3cr3t" not in repr(host.status().to_dict())


def test_events_dropped_by_a_stop_reach_the_sink_too(gates, background):
    sink = BlockedSink()
    sink.release()
    plugin = Blocking(gates.new())
    host = PluginHost(dead_letter_sink=sink)
    try:
        handle = host.add_service("svc", plugin, ServiceConfig(queue_size=4))
        handle.start(timeout=HANG)
        handle.submit(event("in flight"))
        plugin.entered()
        queued = handle.submit(event("queued"))
        stopping = background(handle.stop, drain=False, timeout=HANG)
        assert isinstance(queued.exception(timeout=HANG), errors.ServiceStopped)
        gates.open_all()
        stopping.result(timeout=HANG)
    finally:
        gates.open_all()
        host.close(timeout=HANG)
    assert [letter.event.payload for letter in sink.written] == ["queued"]
    assert sink.written[0].diagnostic.kind.value == "service_stopped"


class Held(ServicePlugin):
    """Its first event waits for the test's gate; the rest are quick."""

    ingresses = (Ingress("in"),)

    def __init__(self, gate, entered):
        self.gate, self.entered = gate, entered

    def handle_ingress(self, event, ctx):
        if event.payload == "held":
            self.entered.set()
            self.gate.wait(HANG)
        return event.payload


def test_an_expired_event_reaches_the_sink_too():
    import datetime as dt
    import threading

    sink = BlockedSink()
    sink.release()
    gate, entered = threading.Event(), threading.Event()
    host = PluginHost(dead_letter_sink=sink)
    try:
        svc = host.add_service("svc", Held(gate, entered))
        svc.start(timeout=HANG)
        held = svc.submit(IngressEvent("in", "test", "held"))
        assert entered.wait(HANG)
        soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=50)
        expiring = svc.submit(IngressEvent("in", "test", "late", expires_at=soon))
        assert isinstance(expiring.exception(timeout=HANG), errors.EventExpired)
        gate.set()
        assert held.result(timeout=HANG) == "held"
    finally:
        gate.set()
        host.close(timeout=HANG)
    assert [letter.event.payload for letter in sink.written] == ["late"]
    assert sink.written[0].diagnostic.kind.value == "event_expired"
