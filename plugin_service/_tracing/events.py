"""Traced events: the futures (and posted events) of a traced service, the
producer side bound into the handle, and the handler that runs in the span.

Bound once per service by ``instrument_service``; a service of a host without
tracing never meets any of it.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from .. import errors
from .._backend import ThreadSession
from .._future import DispatchFuture
from .._service.mailbox import _Posted
from .spans import ATTEMPT, SpanSource, Traced, TracedSettle, Tracing, _time_ns, attempt_of

__all__ = ["TracedFuture", "TracedPosted", "instrument_service", "traced_session"]


class TracedFuture(TracedSettle, DispatchFuture):
    """A ``DispatchFuture`` whose event has a span (see ``spans``)."""

    def __init__(self, event: Any, owner: Any = None) -> None:
        super().__init__(event, owner)
        self._otel_init(owner._otel)

    def _mark_running(self) -> None:
        self._otel_taken = _time_ns()  # under the service's lock: no OTel call here
        super()._mark_running()

    def _mark_pending(self) -> None:
        self._otel_taken = 0
        super()._mark_pending()


class TracedPosted(Traced, _Posted):
    """A posted event with a span: it ends when its outcome is recorded."""

    __slots__ = ("_otel", "_otel_parent", "_otel_t0", "_otel_taken", "_otel_span")

    def __init__(self, event: Any, _owner: Any = None) -> None:
        super().__init__(event, _owner)
        self._otel_init(_owner._otel)

    def set_result(self, _result: Any) -> None:
        self._otel_end(None)

    def set_exception(self, _exception: Optional[BaseException]) -> None:
        self._otel_end(_exception)

    def _mark_running(self) -> None:
        self._otel_taken = _time_ns()

    def _mark_pending(self) -> None:
        self._otel_taken = 0


_TRACED: Dict[Any, Any] = {DispatchFuture: TracedFuture, _Posted: TracedPosted}


def _traced_handler(handle: Callable[[Any, Any], Any], service: Any,
                    tracing: Tracing) -> Callable[[Any, Any], Any]:
    """``handle_ingress`` run in its event's span, each delivery (a retry too) an
    ``attempt`` event on it. The event in flight is ``service._current``, written
    by this same worker thread as it took the event."""
    attach, detach, in_context = tracing.attach, tracing.detach, tracing.in_context

    def handle_ingress(event: Any, ctx: Any) -> Any:
        begin = getattr(service._current, "_otel_begin", None)
        span = None if begin is None else begin()
        if span is None:  # decided before its handler began: nothing to add to
            return handle(event, ctx)
        attempt = attempt_of(event)
        span.add_event("attempt", {} if attempt is None else {ATTEMPT: attempt})
        token = attach(in_context(span))
        try:
            return handle(event, ctx)
        finally:
            detach(token)

    return handle_ingress


class _TracedPlugin:
    """What the serial dispatcher reads of a plugin (``handle_ingress``), traced."""

    __slots__ = ("_plugin", "_service", "_tracing")

    def __init__(self, plugin: Any, service: Any, tracing: Tracing) -> None:
        self._plugin = plugin
        self._service = service
        self._tracing = tracing

    @property
    def handle_ingress(self) -> Callable[[Any, Any], Any]:
        # Read from the plugin here, as the dispatcher would: one without it
        # crashes the worker the same way.
        return _traced_handler(self._plugin.handle_ingress, self._service, self._tracing)


class TracedThreadSession(ThreadSession):
    """The thread session of a traced service: its dispatchers get the traced
    ``handle_ingress``; the plugin itself is unchanged."""

    __slots__ = ("_tracing",)

    def __init__(self, session: ThreadSession, tracing: Tracing) -> None:
        super().__init__(session._plugin, session._factory)
        self._tracing = tracing

    def dispatcher(self, service: Any, plugin: Any) -> Any:
        return super().dispatcher(service, _TracedPlugin(plugin, service, self._tracing))


def traced_session(session: Any, tracing: Tracing) -> Any:
    """``session`` whose handlers run in their events' spans: a thread session's
    (a Ray actor's handler runs in its own process: that session is kept)."""
    if type(session) is ThreadSession:
        return TracedThreadSession(session, tracing)
    return session


def instrument_service(handle: Any, tracing: Tracing) -> None:
    """Trace every event of ``handle`` from now on (before it can take any)."""
    source = SpanSource(tracing, "event %s" % handle.name, "plugin_service.service",
                        handle.name)
    own = handle.__dict__
    own["_otel"] = source
    enqueue, enqueue_many, admit = handle._enqueue, handle._enqueue_many, handle._admit

    def _enqueue(event: Any, make: Any, block: bool, timeout: Optional[float]) -> Any:
        try:
            return enqueue(event, _TRACED.get(make, make), block, timeout)
        except errors.PluginServiceError as exc:
            source.rejected(event, exc)
            raise

    def _enqueue_many(events: Any, make: Any, block: bool, timeout: Optional[float],
                      result: Any = None) -> List[Any]:
        events = list(events)
        try:
            made: List[Any] = enqueue_many(events, _TRACED.get(make, make), block, timeout,
                                           result)
            return made
        except errors.BatchRejected as exc:
            for event, outcome in zip(events, exc.results):
                if isinstance(outcome, errors.PluginServiceError):
                    source.rejected(event, outcome)
            raise

    def _admit(event: Any) -> Optional[DispatchFuture[Any]]:
        # A host-owned source's first step: validated by the service's own
        # _admit, then a traced future instead of its plain one.
        try:
            future = admit(event)
        except errors.PluginServiceError as exc:
            source.rejected(event, exc)
            raise
        return None if future is None else TracedFuture(event, handle)

    # In the instance's own __dict__: found before the class's methods, so the
    # submit path of an untraced service is not touched at all.
    own["_enqueue"] = _enqueue
    own["_enqueue_many"] = _enqueue_many
    own["_admit"] = _admit
