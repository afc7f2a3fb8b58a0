"""Traced tool calls: a span from ``submit_tool``/``call_tool`` to the result.

The span is the caller's child (its context captured as the call is admitted),
started when a pool thread begins the tool, which runs in it, or when the
outcome is known for a call that never ran (timed out waiting, withdrawn,
dropped at close). Its queue wait is the wait for a pool thread.
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Optional

from .. import errors
from .._tool_future import ToolFuture
from .._tools import Tool
from .spans import TOOL, SpanSource, TracedSettle, Tracing, _time_ns

if TYPE_CHECKING:  # pragma: no cover
    from .._tools import _Call

__all__ = ["TracedTool"]


class TracedToolFuture(TracedSettle, ToolFuture):
    """A tool call's future whose call has a span (see ``spans``)."""

    def __init__(self, call: "_Call") -> None:
        super().__init__(call)
        self._otel_init(call.tool._otel)  # type: ignore[attr-defined]  # a TracedTool


class TracedTool(Tool):
    """A tool of a traced host: every call has a span, a refused one too."""

    _future_type = TracedToolFuture

    def __init__(self, *args: Any, tracing: Tracing, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._otel = SpanSource(tracing, "tool %s" % self.name, TOOL, self.name)
        self._tracing = tracing

    def submit(self, request: Any, timeout: Optional[float]) -> "Future[Any]":
        try:
            return super().submit(request, timeout)
        except errors.PluginServiceError as exc:  # ToolBusy, ToolUnavailable, HostClosed
            self._otel.rejected(None, exc)
            raise

    def _run(self, call: "_Call") -> None:
        future: Any = call.future
        future._otel_taken = _time_ns()
        span = future._otel_begin()
        if span is None:  # decided (and its span ended) before a thread began it
            super()._run(call)
            return
        tracing = self._tracing
        token = tracing.attach(tracing.in_context(span))
        try:
            super()._run(call)
        finally:
            tracing.detach(token)
