"""Tracing (``PluginHost(tracing=...)``, the ``otel`` extra): a span per event and
per tool call, checked with the OpenTelemetry SDK's in-memory exporter."""
from __future__ import annotations

import sys
import threading
from typing import Any, List

import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402
from support.doubles import Blocking, Echo, Raising, Scripted, event  # noqa: E402
from support.timing import HANG  # noqa: E402

from plugin_service import DispatchFuture, PluginHost, RetryPolicy, ServiceConfig  # noqa: E402
from plugin_service.errors import QueueFull, ToolBusy  # noqa: E402

SECRET = "hunter2-very-secret"


class _Exporter(InMemorySpanExporter):
    """The in-memory exporter, and a wait for the n-th finished span."""

    def __init__(self) -> None:
        super().__init__()
        self.exported = threading.Condition()

    def export(self, spans: Any) -> Any:
        result = super().export(spans)
        with self.exported:
            self.exported.notify_all()
        return result

    def wait_for(self, count: int) -> List[Any]:
        with self.exported:
            assert self.exported.wait_for(
                lambda: len(self.get_finished_spans()) >= count, HANG)
        return list(self.get_finished_spans())


@pytest.fixture
def exporter() -> _Exporter:
    return _Exporter()


@pytest.fixture
def provider(exporter: _Exporter) -> TracerProvider:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    return made


@pytest.fixture
def traced(make_host: Any, provider: TracerProvider) -> PluginHost:
    host: PluginHost = make_host(tracing=provider)
    return host


def _start(host: PluginHost, name: str, plugin: Any, **config: Any) -> Any:
    handle = host.add_service(name, plugin, ServiceConfig(**config))
    handle.start(timeout=HANG)
    return handle


def _events(spans: List[Any]) -> List[Any]:
    return [span for span in spans if span.name.startswith("event ")]


def test_an_event_gets_one_span_with_service_correlation_id_attempt_and_outcome(
        traced: PluginHost, exporter: _Exporter) -> None:
    _start(traced, "words", Echo())
    assert traced.submit("words", event("x", correlation_id="cid-1")).result(HANG) == "x"
    (span,) = exporter.get_finished_spans()
    assert span.name == "event words"
    assert span.attributes["plugin_service.service"] == "words"
    assert span.attributes["plugin_service.correlation_id"] == "cid-1"
    assert span.attributes["plugin_service.attempt"] == 1
    assert span.attributes["plugin_service.outcome"] == "succeeded"
    assert span.attributes["plugin_service.queue_wait_s"] >= 0
    assert span.attributes["plugin_service.handler_time_s"] >= 0
    assert span.status.status_code is not StatusCode.ERROR


def test_the_event_span_is_the_submitters_child_across_the_thread_hop(
        traced: PluginHost, exporter: _Exporter, provider: TracerProvider) -> None:
    _start(traced, "words", Echo())
    with provider.get_tracer("test").start_as_current_span("request") as request:
        future = traced.submit("words", event("x"))
    future.result(HANG)
    (span,) = _events(exporter.wait_for(2))
    assert span.context.trace_id == request.get_span_context().trace_id
    assert span.parent.span_id == request.get_span_context().span_id


def test_spans_the_handler_makes_nest_under_its_event_span(
        traced: PluginHost, exporter: _Exporter, provider: TracerProvider) -> None:
    tracer = provider.get_tracer("plugin")

    class Traces(Echo):
        def behave(self, event: Any, ctx: Any) -> Any:
            with tracer.start_as_current_span("inside"):
                return event.payload

    _start(traced, "words", Traces())
    traced.submit("words", event("x")).result(HANG)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert spans["inside"].parent.span_id == spans["event words"].context.span_id


def test_a_failed_event_span_is_an_error_with_a_redacted_description(
        traced: PluginHost, exporter: _Exporter) -> None:
    _start(traced, "words", Raising(lambda e: ValueError("password=%s" % SECRET)))
    traced.submit("words", event("x")).exception(HANG)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["plugin_service.outcome"] == "failed"
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError" in span.status.description
    assert SECRET not in span.status.description
    assert span.events == () or all(SECRET not in str(e.attributes) for e in span.events)


def test_a_timed_out_event_span_says_timed_out(
        traced: PluginHost, exporter: _Exporter) -> None:
    _start(traced, "words", Scripted(), dispatch_timeout=0.05)
    traced.submit("words", event("wait")).exception(HANG)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["plugin_service.outcome"] == "timed_out"
    assert span.status.status_code is StatusCode.ERROR


def test_an_event_refused_with_queue_full_gets_a_rejected_span(
        traced: PluginHost, exporter: _Exporter, gates: Any, provider: TracerProvider) -> None:
    gate = gates.new()
    plugin = Blocking(gate)
    _start(traced, "words", plugin, queue_size=1)
    first = traced.submit("words", event("a"))
    plugin.entered()
    second = traced.submit("words", event("b"))
    with provider.get_tracer("test").start_as_current_span("request") as request:
        with pytest.raises(QueueFull):
            traced.submit("words", event("c", correlation_id="cid-c"))
    (rejected,) = _events(exporter.wait_for(2))
    assert rejected.attributes["plugin_service.outcome"] == "rejected"
    assert rejected.attributes["plugin_service.correlation_id"] == "cid-c"
    assert rejected.status.status_code is StatusCode.ERROR
    assert "QueueFull" in rejected.status.description
    assert rejected.parent.span_id == request.get_span_context().span_id
    gate.set()
    first.result(HANG)
    second.result(HANG)
    assert sorted(span.attributes["plugin_service.outcome"]
                  for span in _events(exporter.wait_for(4))) == [
        "rejected", "succeeded", "succeeded"]


def test_a_queued_event_waits_in_its_span(
        traced: PluginHost, exporter: _Exporter, gates: Any) -> None:
    gate = gates.new()
    plugin = Blocking(gate)
    _start(traced, "words", plugin)
    traced.submit("words", event("a"))
    plugin.entered()
    second = traced.submit("words", event("b", correlation_id="second"))
    threading.Timer(0.05, gate.set).start()  # it waits behind "a" at least this long
    second.result(HANG)
    (span,) = [s for s in exporter.wait_for(2)
               if s.attributes["plugin_service.correlation_id"] == "second"]
    assert span.attributes["plugin_service.queue_wait_s"] >= 0.05
    assert span.attributes["plugin_service.handler_time_s"] >= 0


def test_an_event_expired_in_the_queue_gets_an_expired_span(
        traced: PluginHost, exporter: _Exporter, gates: Any) -> None:
    gate = gates.new()
    plugin = Blocking(gate)
    _start(traced, "words", plugin, max_queue_age=0.01)
    first = traced.submit("words", event("a"))
    plugin.entered()
    late = traced.submit("words", event("b"))
    assert late.exception(HANG) is not None  # EventExpired, while the first is held
    gate.set()
    first.result(HANG)
    outcomes = sorted(s.attributes["plugin_service.outcome"] for s in exporter.wait_for(2))
    assert outcomes == ["expired", "succeeded"]


def test_retries_are_attempt_events_on_the_one_span(
        traced: PluginHost, exporter: _Exporter) -> None:
    class FailsTwice(Echo):
        def behave(self, event: Any, ctx: Any) -> Any:
            if event.attempt < 3:
                raise ValueError("not yet")
            return event.payload

    _start(traced, "words", FailsTwice(), retry=RetryPolicy(max_attempts=3, backoff=0.0))
    assert traced.submit("words", event("x")).result(HANG) == "x"
    (span,) = exporter.get_finished_spans()
    assert [(e.name, e.attributes["plugin_service.attempt"]) for e in span.events] == [
        ("attempt", 1), ("attempt", 2), ("attempt", 3)]
    assert span.attributes["plugin_service.outcome"] == "succeeded"


def test_a_posted_event_gets_its_span_when_its_outcome_is_recorded(
        traced: PluginHost, exporter: _Exporter) -> None:
    _start(traced, "words", Echo())
    cid = traced.post("words", event("x"))
    (span,) = exporter.wait_for(1)
    assert span.attributes["plugin_service.correlation_id"] == cid
    assert span.attributes["plugin_service.outcome"] == "succeeded"


def test_events_dropped_at_stop_and_cancelled_ones_get_dropped_spans(
        traced: PluginHost, exporter: _Exporter, gates: Any, background: Any) -> None:
    gate = gates.new()
    plugin = Blocking(gate)
    handle = _start(traced, "words", plugin)
    traced.submit("words", event("a"))
    plugin.entered()
    cancelled = traced.submit("words", event("b"))
    dropped = traced.submit("words", event("c"))
    assert cancelled.cancel()
    stopping = background(handle.stop, drain=False, timeout=HANG)
    assert handle.wait_for("stopping", HANG)  # "c" is dropped, "a" still held
    gate.set()
    stopping.result(HANG)
    assert dropped.exception(HANG) is not None
    outcomes = sorted(s.attributes["plugin_service.outcome"] for s in exporter.wait_for(3))
    assert outcomes == ["dropped", "dropped", "succeeded"]


def test_every_event_of_a_batch_gets_a_span_a_refused_one_too(
        traced: PluginHost, exporter: _Exporter) -> None:
    _start(traced, "words", Echo())
    with pytest.raises(Exception):
        traced.service("words").submit_many([event("a"), event("b", attempt=0)])
    spans = exporter.wait_for(2)
    assert sorted(s.attributes["plugin_service.outcome"] for s in spans) == [
        "rejected", "succeeded"]


def test_no_payload_or_secret_reaches_a_span(
        traced: PluginHost, exporter: _Exporter) -> None:
    _start(traced, "words", Scripted())
    traced.submit("words", event({"token": SECRET})).result(HANG)
    traced.submit("words", event(ValueError("api_key=" + SECRET))).exception(HANG)
    for span in exporter.wait_for(2):
        allowed = {"plugin_service.service", "plugin_service.correlation_id",
                   "plugin_service.attempt", "plugin_service.outcome",
                   "plugin_service.queue_wait_s", "plugin_service.handler_time_s"}
        assert set(span.attributes) <= allowed
        text = repr(dict(span.attributes)) + repr(span.status.description) + repr(
            [dict(e.attributes) for e in span.events])
        assert SECRET not in text


def test_a_tool_call_gets_a_span_under_the_callers_and_the_tool_runs_in_it(
        traced: PluginHost, exporter: _Exporter, provider: TracerProvider) -> None:
    tracer = provider.get_tracer("tool")

    def lookup(request: Any, ctx: Any) -> Any:
        with tracer.start_as_current_span("inside"):
            return request * 2

    traced.add_tool("lookup", lookup)
    with tracer.start_as_current_span("request") as request:
        assert traced.call_tool("lookup", 21) == 42
    spans = {span.name: span for span in exporter.wait_for(3)}
    call = spans["tool lookup"]
    assert call.parent.span_id == request.get_span_context().span_id
    assert spans["inside"].parent.span_id == call.context.span_id
    assert call.attributes["plugin_service.tool"] == "lookup"
    assert call.attributes["plugin_service.outcome"] == "succeeded"


def test_a_failed_and_a_refused_tool_call_get_error_spans(
        traced: PluginHost, exporter: _Exporter, gates: Any) -> None:
    gate = gates.new()
    entered = threading.Event()

    def fails(request: Any, ctx: Any) -> Any:
        raise RuntimeError("secret=" + SECRET)

    def held(request: Any, ctx: Any) -> Any:
        entered.set()
        gate.wait(HANG)
        return "done"

    traced.add_tool("fails", fails)
    traced.add_tool("held", held, max_concurrency=1)
    assert traced.submit_tool("fails", None).exception(HANG) is not None
    running = traced.submit_tool("held", None)
    assert entered.wait(HANG)
    with pytest.raises(ToolBusy):
        traced.submit_tool("held", None)
    gate.set()
    assert running.result(HANG) == "done"
    by_outcome = {s.attributes["plugin_service.outcome"]: s for s in exporter.wait_for(3)}
    assert set(by_outcome) == {"failed", "rejected", "succeeded"}
    assert by_outcome["failed"].status.status_code is StatusCode.ERROR
    assert SECRET not in by_outcome["failed"].status.description
    assert "ToolBusy" in by_outcome["rejected"].status.description


def test_a_host_without_tracing_makes_no_span_and_binds_nothing(
        make_host: Any, exporter: _Exporter, provider: TracerProvider) -> None:
    host = make_host()
    handle = _start(host, "words", Echo())
    host.add_tool("lookup", lambda request, ctx: request)
    with provider.get_tracer("test").start_as_current_span("request"):
        future = host.submit("words", event("x"))
        assert host.call_tool("lookup", 1) == 1
    assert future.result(HANG) == "x"
    assert type(future) is DispatchFuture  # the untraced submit path, as it was
    assert "_enqueue" not in vars(handle)
    assert [span.name for span in exporter.get_finished_spans()] == ["request"]


def test_tracing_true_uses_the_global_provider_and_never_sets_it(make_host: Any) -> None:
    before = trace.get_tracer_provider()
    host = make_host(tracing=True)
    _start(host, "words", Echo())
    assert host.submit("words", event("x")).result(HANG) == "x"
    assert trace.get_tracer_provider() is before


def test_tracing_refuses_what_is_no_tracer_provider() -> None:
    with pytest.raises(TypeError, match="TracerProvider"):
        PluginHost(tracing="yes")


def test_tracing_without_opentelemetry_installed_names_the_extra(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"plugin_service\[otel\]"):
        PluginHost(tracing=True)


def test_a_replaced_plugins_handler_still_runs_in_its_event_span(
        traced: PluginHost, exporter: _Exporter, provider: TracerProvider) -> None:
    tracer = provider.get_tracer("plugin")

    class Traces(Echo):
        def behave(self, event: Any, ctx: Any) -> Any:
            with tracer.start_as_current_span("inside new"):
                return event.payload

    _start(traced, "words", Echo())
    traced.replace_service("words", Traces(), timeout=HANG)
    traced.submit("words", event("x")).result(HANG)
    spans = {span.name: span for span in exporter.wait_for(2)}
    assert spans["inside new"].parent.span_id == spans["event words"].context.span_id
