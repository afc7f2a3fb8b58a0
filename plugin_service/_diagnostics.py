"""Diagnostics: what went wrong, counters, and status snapshots as frozen values."""
from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Mapping
from typing import Any, Dict, Optional, Tuple

import attrs

from ._lifecycle import LifecycleState

__all__ = [
    "DiagnosticKind",
    "Diagnostic",
    "DispatchCounters",
    "ServiceStatus",
    "ToolCounters",
    "ToolStatus",
    "HostStatus",
    "DeadLetter",
    "jsonable",
]


class DiagnosticKind(str, enum.Enum):
    """What a diagnostic (or a typed error) is about; values are lower snake-case."""

    LIFECYCLE = "lifecycle"
    INVALID_EVENT = "invalid_event"
    QUEUE_FULL = "queue_full"
    DISPATCH_TIMEOUT = "dispatch_timeout"
    DISPATCH_FAILED = "dispatch_failed"
    SERVICE_UNAVAILABLE = "service_unavailable"
    SERVICE_FAILED = "service_failed"
    SERVICE_STOPPED = "service_stopped"
    SERVICE_NOT_FOUND = "service_not_found"
    TOOL_FAILED = "tool_failed"
    TOOL_TIMEOUT = "tool_timeout"
    TOOL_BUSY = "tool_busy"
    TOOL_NOT_FOUND = "tool_not_found"
    HOST_CLOSED = "host_closed"
    PLUGIN_LOAD = "plugin_load"
    HOST_FORKED = "host_forked"

    def __str__(self) -> str:
        return self.value


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def jsonable(value: Any) -> Any:
    """Turn a status value into plain JSON types (enums by value, datetimes as ISO 8601)."""
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if attrs.has(type(value)):
        return {f.name: jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    try:
        return repr(value)
    except Exception:
        return "<unrepresentable %s>" % type(value).__name__


@attrs.frozen
class Diagnostic:
    """One recorded incident: a rejection, a failed or timed-out event, a transition.

    ``message`` is already bounded and redacted: it never carries a secret.
    """

    kind: DiagnosticKind
    state: LifecycleState
    message: str
    at: _dt.datetime = attrs.field(factory=_utcnow)
    correlation_id: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        result: Dict[str, Any] = jsonable(self)
        return result


@attrs.frozen
class DispatchCounters:
    """Cumulative counts over a service's whole life in its host, across restarts.

    At every snapshot ``enqueued == succeeded + failed + timed_out + dropped +
    queue_depth + in_flight`` and ``dispatched == succeeded + failed + timed_out +
    in_flight``.
    """

    enqueued: int = 0
    dispatched: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    rejected: int = 0
    dropped: int = 0
    retried: int = 0


@attrs.frozen
class ServiceStatus:
    """One consistent snapshot of a service, as returned by ``ServiceHandle.status()``."""

    name: str
    state: LifecycleState
    queue_depth: int
    queue_capacity: int
    in_flight: int
    overdue: bool
    last_error: Optional[Diagnostic]
    failure: Optional[Diagnostic]
    counters: DispatchCounters
    diagnostics: Tuple[Diagnostic, ...] = ()
    plugin_status: Optional[Mapping[str, Any]] = None
    restarts: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain JSON types that ``json.dumps`` accepts."""
        result: Dict[str, Any] = jsonable(self)
        return result


@attrs.frozen
class ToolCounters:
    """Cumulative counts of one tool; ``rejected`` calls are not counted in ``calls``.

    Every admitted call ends in exactly one outcome: at every snapshot
    ``calls == succeeded + failed + timed_out + dropped + ToolStatus.in_flight``.
    ``dropped`` counts calls withdrawn before the tool was called: by
    ``future.cancel()`` or by ``close()`` (those raise ``HostClosed``). A call
    abandoned by ``close()`` while still running counts as timed out.
    """

    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    rejected: int = 0
    dropped: int = 0


@attrs.frozen
class ToolStatus:
    """A snapshot of one tool.

    ``in_flight`` counts admitted calls without an outcome yet (waiting for a pool
    thread, or running); ``overdue`` counts calls whose outcome is recorded (timed
    out, or abandoned by ``close()``) but whose thread is still inside the tool.
    Each of them holds a bulkhead slot: ``in_flight + overdue <= max_concurrency``.
    ``abandoned`` counts the calls ``close()`` stopped waiting for because they were
    still running past their bound (their threads are left behind).
    """

    name: str
    in_flight: int
    max_concurrency: Optional[int]
    counters: ToolCounters
    last_error: Optional[Diagnostic]
    overdue: int = 0
    abandoned: int = 0

    def to_dict(self) -> Dict[str, Any]:
        result: Dict[str, Any] = jsonable(self)
        return result


@attrs.frozen
class HostStatus:
    """Snapshots of every service and tool of a host, keyed by name.

    ``forked`` is True for a host inherited through ``os.fork()``: in that process
    it runs nothing, and every service and tool reports a HOST_FORKED diagnostic.
    """

    services: Mapping[str, ServiceStatus] = attrs.field(factory=dict)
    tools: Mapping[str, ToolStatus] = attrs.field(factory=dict)
    forked: bool = False

    def to_dict(self) -> Dict[str, Any]:
        """``{"services": {name: ...}, "tools": {name: ...}, "forked": bool}`` in plain
        JSON types."""
        result: Dict[str, Any] = jsonable(self)
        return result


@attrs.frozen
class DeadLetter:
    """An accepted event that did not succeed: failed, timed out, or dropped."""

    service: str
    event: Any
    diagnostic: Diagnostic

    def to_dict(self) -> Dict[str, Any]:
        result: Dict[str, Any] = jsonable(self)
        return result
