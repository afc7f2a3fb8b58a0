"""The span of one event or tool call, from submission to outcome.

A traced future (``Traced``) captures the submitter's OpenTelemetry context and
the time on the submitting thread, and nothing more: its span is started when
its handler begins (on the worker, so the plugin's own spans nest under it) or,
for one that never reaches a handler (dropped, expired, timed out first, or on a
Ray actor), when its outcome is known. It ends just before the future settles,
so whoever sees the outcome finds the span ended.

A span carries no payload and no secret: the service or tool name, the
correlation id (shown redacted, as in every export), the attempt, the outcome
(the counter it was counted in) and the queue wait and handler time in
seconds. A failure's status description is the error's redacted description.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Optional

from .. import errors
from .._future import _DONE
from .._guarded import describe
from .._redact import shown_id

__all__ = ["ATTEMPT", "OUTCOME", "Tracing", "SpanSource", "Traced"]

_time_ns = time.time_ns
_ENDED = object()  # _otel_span once the span ended

SERVICE = "plugin_service.service"
TOOL = "plugin_service.tool"
CORRELATION_ID = "plugin_service.correlation_id"
ATTEMPT = "plugin_service.attempt"
OUTCOME = "plugin_service.outcome"
QUEUE_WAIT = "plugin_service.queue_wait_s"
HANDLER_TIME = "plugin_service.handler_time_s"

# The counter an error's event was counted in; any other error is "failed".
_OUTCOMES = ((errors.DispatchTimeout, "timed_out"), (errors.ToolTimeout, "timed_out"),
             (errors.EventExpired, "expired"), (errors._StateError, "dropped"),
             (errors.HostClosed, "dropped"))


def outcome_of(error: Optional[BaseException]) -> str:
    if error is None:
        return "succeeded"
    for kind, outcome in _OUTCOMES:
        if isinstance(error, kind):  # our own errors: no plugin code runs here
            return outcome
    return "failed"


def attempt_of(event: Any) -> Optional[int]:
    """The event's ``attempt`` if it is a plain int (an event subclass may lie)."""
    try:
        attempt = event.attempt
    except Exception:
        return None
    return attempt if type(attempt) is int else None


class Tracing:
    """A host's tracing: its tracer and the context functions, bound once."""

    __slots__ = ("tracer", "current", "attach", "detach", "in_context", "error_status")

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Status, StatusCode
        self.tracer = tracer
        self.current = context.get_current
        self.attach = context.attach
        self.detach = context.detach
        self.in_context = trace.set_span_in_context

        def error_status(description: str) -> Any:
            return Status(StatusCode.ERROR, description)

        self.error_status = error_status


class SpanSource:
    """What the spans of one service or tool share: the tracer, the span's name
    and the attribute naming it; ``lock`` orders a span's start against its end
    (a handler beginning as the watchdog times its event out)."""

    __slots__ = ("tracing", "name", "attributes", "lock")

    def __init__(self, tracing: Tracing, span_name: str, key: str, name: str) -> None:
        self.tracing = tracing
        self.name = span_name
        self.attributes: Dict[str, Any] = {key: name}
        self.lock = threading.Lock()

    def start(self, record: "Traced") -> Any:
        attributes = dict(self.attributes)
        cid = shown_id(getattr(record, "_cid", None))
        if cid is not None:
            attributes[CORRELATION_ID] = cid
        event = getattr(record, "event", None)
        if event is not None:
            attempt = attempt_of(event)
            if attempt is not None:
                attributes[ATTEMPT] = attempt
        return self.tracing.tracer.start_span(
            self.name, context=record._otel_parent, start_time=record._otel_t0,
            attributes=attributes)

    def end(self, span: Any, record: "Traced", error: Optional[BaseException],
            outcome: Optional[str]) -> None:
        now = _time_ns()
        taken = record._otel_taken
        if taken:  # one call: the SDK takes the span's lock for each
            span.set_attributes({OUTCOME: outcome or outcome_of(error),
                                 QUEUE_WAIT: (taken - record._otel_t0) / 1e9,
                                 HANDLER_TIME: (now - taken) / 1e9})
        else:
            span.set_attribute(OUTCOME, outcome or outcome_of(error))
        if error is not None:
            span.set_status(self.tracing.error_status(describe(error, 256)))
        span.end(end_time=now)

    def rejected(self, event: Any, error: BaseException) -> None:
        """A span for an event refused at submission (``QueueFull``, ``InvalidEvent``,
        the state's error), in the submitter's context, ended at once."""
        if isinstance(error, errors.HostForked):
            return  # the parent's host: nothing of it is reported from a fork
        try:
            attributes = dict(self.attributes)
            cid = _plain_cid(event)
            if cid is not None:
                attributes[CORRELATION_ID] = cid
            attributes[OUTCOME] = "rejected"
            span = self.tracing.tracer.start_span(self.name, attributes=attributes)
            span.set_status(self.tracing.error_status(describe(error, 256)))
            span.end()
        except Exception:  # pragma: no cover - tracing never breaks a submit
            pass


def _plain_cid(event: Any) -> Optional[str]:
    try:
        cid = event.correlation_id
    except Exception:
        return None
    return shown_id(cid) if type(cid) is str else None


class Traced:
    """The tracing half of a traced future (or posted event): see the module."""

    if not TYPE_CHECKING:
        # Empty, so a class with slots of its own (a posted event) can mix it in;
        # each such class lists the five fields (mypy would reject them here).
        __slots__ = ()
    _otel: SpanSource
    _otel_parent: Any
    _otel_t0: int
    _otel_taken: int
    _otel_span: Any

    def _otel_init(self, source: SpanSource) -> None:
        """On the submitting thread: the context its span will be a child of."""
        self._otel = source
        self._otel_parent = source.tracing.current()
        self._otel_t0 = _time_ns()
        self._otel_taken = 0
        self._otel_span = None

    def _otel_begin(self) -> Any:
        """Its handler begins: the span, started now unless it was; None once ended."""
        source = self._otel
        try:
            with source.lock:
                span = self._otel_span
                if span is None:
                    span = self._otel_span = source.start(self)
        except Exception:  # pragma: no cover - tracing never breaks a dispatch
            return None
        return None if span is _ENDED else span

    def _otel_end(self, error: Optional[BaseException], outcome: Optional[str] = None) -> None:
        """Its outcome is known: end the span (starting it first if it never was)."""
        source = self._otel
        try:
            with source.lock:
                span = self._otel_span
                if span is _ENDED:
                    return
                if span is None:
                    span = source.start(self)
                self._otel_span = _ENDED
            source.end(span, self, error, outcome)
        except Exception:  # pragma: no cover - tracing never breaks a settle
            pass


class TracedSettle(Traced):
    """Settling a traced future (an event's or a tool call's) ends its span first,
    so whoever has the result finds the span exported; a withdrawn one (cancelled
    before it ran) counts as dropped."""

    if not TYPE_CHECKING:
        __slots__ = ()
    _state: Any

    def set_result(self, result: Any) -> None:
        if self._state not in _DONE:
            self._otel_end(None)
        super().set_result(result)  # type: ignore[misc]

    def set_exception(self, exception: Optional[BaseException]) -> None:
        if self._state not in _DONE:
            self._otel_end(exception)
        super().set_exception(exception)  # type: ignore[misc]

    def _announce_withdrawn(self) -> bool:
        self._otel_end(None, "dropped")
        announced: bool = super()._announce_withdrawn()  # type: ignore[misc]
        return announced

