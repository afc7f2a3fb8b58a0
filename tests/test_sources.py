"""Host-owned sources: delivery, acknowledgements, rejections, pause, send, the
checks of add_source, and what status, to_dict and the metrics report."""
from __future__ import annotations

import threading

import pytest
from support.checks import assert_invariants, wait_until
from support.doubles import INGRESS, Blocking, Echo, Recorder, event
from support.sources import (
    BAD,
    END,
    SECRET,
    AckingSource,
    FedSource,
    SendingSource,
    assert_source_invariant,
    settled,
)
from support.timing import HANG

from plugin_service import (
    DiagnosticKind,
    IngressSource,
    IterableSource,
    ServicePlugin,
    SourceState,
    SourceStatus,
    errors,
)


class Failing(Recorder):
    """Raises for the payload "boom", echoes the others."""

    def behave(self, event, ctx):
        if event.payload == "boom":
            raise RuntimeError("boom")
        return event.payload


def _stopped(handle):
    wait_until(lambda: handle.status().state is SourceState.STOPPED, what="source stopped")
    return handle.status()


# ------------------------------------------------------------------ delivery
def test_iterable_source_delivers_every_item_in_order_then_stops(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    handle = host.add_source("numbers", IterableSource(range(50)), service="svc",
                             ingress=INGRESS)
    status = _stopped(handle)
    wait_until(lambda: len(plugin.payloads) == 50)
    assert plugin.payloads == list(range(50))
    assert (status.received, status.submitted, status.rejected, status.dropped) == (50, 50, 0, 0)
    assert status.last_error is None


def test_events_of_a_source_name_it_and_its_ingress(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    _stopped(host.add_source("feed", IterableSource(["a"]), service="svc", ingress=INGRESS))
    received = plugin.entered()
    assert (received.source, received.ingress, received.kind, received.payload) == (
        "feed", INGRESS, "event", "a")


def test_an_iterable_of_events_submits_them_as_they_are(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    given = [event(n, kind="custom", source="elsewhere") for n in range(3)]
    _stopped(host.add_source("events", IterableSource(given), service="svc", ingress=INGRESS))
    wait_until(lambda: len(plugin.events) == 3)
    assert plugin.events == given


def test_a_source_added_before_its_service_starts_reads_once_it_runs(host):
    plugin = Echo()
    service = host.add_service("svc", plugin)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(1)
    assert handle.status().state is SourceState.CONNECTING
    assert source.connects == 0  # nothing is opened for a service that is not running
    service.start(timeout=HANG)
    assert plugin.entered().payload == 1
    assert source.connects == 1


def test_receive_runs_on_the_source_thread_named_after_it(host, start_service):
    start_service("svc", Echo())
    source = FedSource()
    host.add_source("named", source, service="svc", ingress=INGRESS)
    wait_until(lambda: source.receive_threads)
    assert source.receive_threads[0] == "plugin_service-source-named"


def test_on_outcome_acks_every_event_exactly_once_with_its_outcome(host, start_service):
    start_service("svc", Failing(), fail_after=None)
    source = AckingSource()
    handle = host.add_source("acking", source, service="svc", ingress=INGRESS)
    source.put("a", "boom", "b", "boom", "c")
    wait_until(lambda: len(source.acks) == 5)
    assert sorted(source.acks) == sorted([("a", "a"), ("boom", "DispatchFailed"), ("b", "b"),
                                          ("boom", "DispatchFailed"), ("c", "c")])
    counters = host.service("svc").status().counters
    assert (counters.succeeded, counters.failed) == (3, 2)
    assert handle.status().submitted == 5


def test_a_raising_on_outcome_is_recorded_and_the_source_goes_on(host, start_service):
    class Raises(FedSource):
        def on_outcome(self, event, future):
            raise RuntimeError("ack failed token=%s" % SECRET)

    plugin = Echo()
    start_service("svc", plugin)
    source = Raises()
    handle = host.add_source("acks", source, service="svc", ingress=INGRESS)
    source.put(1, 2)
    wait_until(lambda: len(plugin.payloads) == 2 and handle.status().last_error is not None)
    error = handle.status().last_error
    assert "on_outcome raised RuntimeError" in error.message
    assert SECRET not in error.message


# ---------------------------------------------------------------- rejections
def test_an_item_to_event_refuses_is_rejected_and_the_source_goes_on(host, start_service):
    plugin = Echo()
    service = start_service("svc", plugin)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(1, BAD, 2)
    status = settled(handle, 3)
    wait_until(lambda: len(plugin.payloads) == 2)
    assert plugin.payloads == [1, 2]
    assert (status.submitted, status.rejected, status.state) == (2, 1, SourceState.OPEN)
    assert status.last_error.kind is DiagnosticKind.INVALID_EVENT
    assert "to_event raised ValueError" in status.last_error.message
    noted = service.status()
    assert noted.counters.rejected == 1 and noted.rejections[DiagnosticKind.INVALID_EVENT] == 1
    assert noted.last_error.kind is DiagnosticKind.INVALID_EVENT
    for text in (str(status.to_dict()), str(noted.to_dict())):
        assert SECRET not in text


def test_an_event_the_service_finds_invalid_is_rejected_and_the_source_goes_on(
        host, start_service):
    plugin = Echo()
    service = start_service("svc", plugin)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(event("wrong", ingress="nowhere"), 2)
    status = settled(handle, 2)
    assert plugin.entered().payload == 2
    assert (status.submitted, status.rejected) == (1, 1)
    assert "undeclared ingress" in status.last_error.message
    assert service.status().rejections[DiagnosticKind.INVALID_EVENT] == 1


def test_the_default_to_event_rejects_an_item_that_is_no_event(host, start_service):
    class Raw(IngressSource):
        def __init__(self):
            self.items = iter(["not an event"])

        def receive(self, ctx):
            return next(self.items, None)

    start_service("svc", Echo())
    handle = host.add_source("raw", Raw(), service="svc", ingress=INGRESS)
    status = settled(handle, 1)
    assert status.rejected == 1
    assert "not an IngressEvent" in status.last_error.message


# --------------------------------------------------------------------- pause
def test_pause_stops_reading_until_resume(host, start_service):
    plugin = Echo()
    start_service("svc", plugin)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(1)
    assert plugin.entered().payload == 1
    handle.pause()
    wait_until(lambda: handle.status().state is SourceState.PAUSED)
    reads = len(source.receive_threads)
    source.put(2)
    handle.pause()  # idempotent
    assert len(source.receive_threads) == reads  # paused: receive() is not called
    assert handle.status().received == 1
    handle.resume()
    assert plugin.entered().payload == 2
    assert handle.status().state is SourceState.OPEN


# ---------------------------------------------------------------------- send
def test_send_from_a_handler_reaches_the_source(host):
    source = SendingSource()

    class Answering(ServicePlugin):
        ingresses = Echo.ingresses

        def handle_ingress(self, event, ctx):
            host.source(event.source).send("re: %s" % event.payload)

    host.add_service("bot", Answering()).start(timeout=HANG)
    host.add_source("chat", source, service="bot", ingress=INGRESS)
    source.put("hello")
    wait_until(lambda: source.sent)
    assert source.sent == [("re: hello", "bot")]  # on the service's worker


def test_send_through_a_source_that_cannot_send_raises_source_unavailable(
        host, start_service):
    start_service("svc", Echo())
    handle = host.add_source("fed", FedSource(), service="svc", ingress=INGRESS)
    with pytest.raises(errors.SourceUnavailable) as raised:
        handle.send("x")
    assert raised.value.source == "fed" and raised.value.state is None
    assert "does not implement send()" in str(raised.value)


def test_send_while_not_connected_raises_source_unavailable_with_the_state(host):
    host.add_service("svc", Echo())  # not started: the source is not connected yet
    handle = host.add_source("chat", SendingSource(), service="svc", ingress=INGRESS)
    with pytest.raises(errors.SourceUnavailable) as raised:
        handle.send("x")
    assert raised.value.state is SourceState.CONNECTING
    assert raised.value.kind is DiagnosticKind.SOURCE_UNAVAILABLE


# ------------------------------------------------------------- add_source
def test_a_duplicate_source_name_raises_value_error(host, start_service):
    start_service("svc", Echo())
    host.add_source("one", FedSource(), service="svc", ingress=INGRESS)
    with pytest.raises(ValueError, match="attached already"):
        host.add_source("one", FedSource(), service="svc", ingress=INGRESS)


def test_a_source_instance_is_attached_once(host, start_service):
    start_service("svc", Echo())
    source = FedSource()
    host.add_source("one", source, service="svc", ingress=INGRESS)
    with pytest.raises(ValueError, match="attached already"):
        host.add_source("two", source, service="svc", ingress=INGRESS)


def test_an_unknown_service_raises_service_not_found(host):
    with pytest.raises(errors.ServiceNotFound):
        host.add_source("one", FedSource(), service="nowhere", ingress=INGRESS)


@pytest.mark.parametrize("started", [True, False], ids=["running", "not started"])
def test_an_undeclared_ingress_raises_invalid_event(host, started):
    service = host.add_service("svc", Echo())
    if started:
        service.start(timeout=HANG)
    with pytest.raises(errors.InvalidEvent, match="undeclared ingress 'nope'"):
        host.add_source("one", FedSource(), service="svc", ingress="nope")
    assert host.status().sources == {}


@pytest.mark.parametrize(("options", "error"), [
    ({"overflow": "spill"}, ValueError),
    ({"reconnect": 3}, TypeError),
    ({"ingress": " "}, ValueError),
])
def test_bad_options_are_refused(host, start_service, options, error):
    start_service("svc", Echo())
    kwargs = dict({"service": "svc", "ingress": INGRESS}, **options)
    with pytest.raises(error):
        host.add_source("one", FedSource(), **kwargs)


@pytest.mark.parametrize("given", [object(), IngressSource], ids=["object", "class"])
def test_something_that_is_no_source_instance_raises_type_error(host, start_service, given):
    start_service("svc", Echo())
    with pytest.raises(TypeError):
        host.add_source("one", given, service="svc", ingress=INGRESS)


def test_an_unknown_source_raises_source_not_found(host):
    with pytest.raises(errors.SourceNotFound) as raised:
        host.source("nowhere")
    assert isinstance(raised.value, LookupError) and raised.value.name == "nowhere"


def test_add_source_after_close_raises_host_closed(host):
    host.add_service("svc", Echo())
    host.close(timeout=HANG)
    with pytest.raises(errors.HostClosed):
        host.add_source("late", FedSource(), service="svc", ingress=INGRESS)


# ------------------------------------------------------------------ closing
def test_close_during_a_burst_loses_nothing_read(make_host, gates):
    host = make_host()
    plugin = Echo()
    host.add_service("svc", plugin).start(timeout=HANG)
    source = AckingSource()
    handle = host.add_source("burst", source, service="svc", ingress=INGRESS)
    source.put(*range(100_000))
    wait_until(lambda: handle.status().received > 100)
    host.close(timeout=HANG)
    status, service = handle.status(), host.service("svc").status()
    assert status.state is SourceState.STOPPED
    assert status.received == status.submitted + status.rejected + status.dropped
    assert service.counters.succeeded == status.submitted == len(plugin.payloads)
    assert plugin.payloads == list(range(status.submitted))
    assert len(source.acks) == status.submitted
    assert source.closes == 1
    assert_invariants(service)


def test_close_joins_every_source_thread(make_host):
    host = make_host()
    host.add_service("svc", Echo()).start(timeout=HANG)
    for n in range(3):
        host.add_source("s%d" % n, FedSource(), service="svc", ingress=INGRESS)
    host.close(timeout=HANG)
    assert not [t for t in threading.enumerate()
                if t.name.startswith("plugin_service-source-s")]


def test_close_stops_a_source_blocked_on_a_full_queue_counting_its_item(
        make_host, gates):
    host = make_host()
    plugin = Blocking(gates.new())
    host.add_service("svc", plugin, ).start(timeout=HANG)
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(*range(40))  # queue_size 32: one in flight, 32 queued, one held
    wait_until(lambda: handle.status().received == 34)
    host.close(timeout=0.5)  # the handler never returns within it
    status = handle.status()
    assert (status.received, status.submitted, status.dropped) == (34, 33, 1)
    assert status.state is SourceState.STOPPED


# ------------------------------------------------------------------- status
def test_status_to_dict_and_host_status_report_the_source(host, start_service):
    start_service("svc", Echo())
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(1, 2, END)
    status = _stopped(handle)
    assert isinstance(status, SourceStatus)
    assert status.last_received_at is not None
    assert host.status().sources == {"fed": status}
    exported = host.status().to_dict()["sources"]["fed"]
    assert exported["state"] == "stopped" and exported["received"] == 2
    assert exported["service"] == "svc" and exported["name"] == "fed"
    assert_source_invariant(status)


def test_source_states_are_the_six_of_the_contract():
    assert [state.value for state in SourceState] == [
        "connecting", "open", "backoff", "paused", "stopped", "failed"]
    assert SourceState.OPEN == "open"


def test_the_metrics_export_every_source(host, start_service):
    prometheus = pytest.importorskip("prometheus_client")
    from plugin_service.metrics import PluginHostCollector

    start_service("svc", Echo())
    source = FedSource()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(1, BAD, END)
    _stopped(handle)
    registry = prometheus.CollectorRegistry()
    registry.register(PluginHostCollector(host))
    labels = {"source": "fed", "service": "svc"}
    value = registry.get_sample_value
    assert value("plugin_service_source_received_total", labels) == 2
    assert value("plugin_service_source_submitted_total", labels) == 1
    assert value("plugin_service_source_rejected_total", labels) == 1
    assert value("plugin_service_source_dropped_total", labels) == 0
    assert value("plugin_service_source_reconnects_total", labels) == 0
    assert value("plugin_service_source_state", dict(labels, state="stopped")) == 1
    assert value("plugin_service_source_state", dict(labels, state="open")) == 0


def test_an_item_whose_to_event_raises_a_base_exception_is_rejected_and_the_source_goes_on(
        host, start_service):
    class Abort(BaseException):
        """Not an Exception: plugin code may raise one all the same."""

    class Raising(FedSource):
        def to_event(self, item):
            if item[0] == "abort":
                raise Abort("cannot parse")
            return super().to_event(item)

    plugin = Echo()
    start_service("svc", plugin)
    source = Raising()
    handle = host.add_source("fed", source, service="svc", ingress=INGRESS)
    source.put(1, "abort", 2)
    status = settled(handle, 3)
    wait_until(lambda: len(plugin.payloads) == 2)
    assert plugin.payloads == [1, 2]
    assert (status.submitted, status.rejected, status.state) == (2, 1, SourceState.OPEN)
    assert "to_event raised Abort" in status.last_error.message


def test_a_source_class_may_have_a_name_attribute_of_its_own(host, start_service):
    class Named(FedSource):
        name = "the default name"  # a class attribute, not an attachment

    plugin = Echo()
    start_service("svc", plugin)
    source = Named()
    handle = host.add_source("named", source, service="svc", ingress=INGRESS)
    source.put(1)
    wait_until(lambda: plugin.payloads == [1])
    assert handle.status().submitted == 1


def test_a_duplicate_name_is_refused_before_the_ingress_is_checked(host, start_service):
    start_service("svc", Echo())
    host.add_source("one", FedSource(), service="svc", ingress=INGRESS)
    with pytest.raises(ValueError, match="attached already"):
        host.add_source("one", FedSource(), service="svc", ingress="nope")
