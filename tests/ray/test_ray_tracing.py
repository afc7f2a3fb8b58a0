"""Tracing on the Ray backend: an event's span covers its submission to its
outcome on the host, with the same attributes as on threads."""
from __future__ import annotations

from typing import Any

import pytest
from support.backends import failure_of, started
from support.contract import event
from support.timing import PROCESS_HANG

from plugin_service import PluginHost, RayBackend

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

SECRET = "hunter2-very-secret"


def test_an_event_on_ray_has_a_span_from_submit_to_outcome_on_the_host(
        ray_session: Any, gates: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    host = PluginHost(backend=RayBackend(), tracing=provider)
    try:
        svc = started(host)
        with provider.get_tracer("test").start_as_current_span("request") as request:
            ok = svc.submit(event("echo", 1, correlation_id="cid-ray"))
        failed = svc.submit(event("raise", "password=" + SECRET))
        assert ok.result(PROCESS_HANG) == 1
        failure_of(failed)
    finally:
        host.close(timeout=PROCESS_HANG)
    spans = {span.attributes["plugin_service.outcome"]: span
             for span in exporter.get_finished_spans() if span.name == "event svc"}
    assert set(spans) == {"succeeded", "failed"}
    succeeded = spans["succeeded"]
    assert succeeded.parent.span_id == request.get_span_context().span_id
    assert succeeded.attributes["plugin_service.correlation_id"] == "cid-ray"
    assert succeeded.attributes["plugin_service.handler_time_s"] >= 0
    assert spans["failed"].status.status_code is StatusCode.ERROR
    assert SECRET not in spans["failed"].status.description
