"""Diagnostics: what went wrong, counters, and status snapshots as frozen values."""
from __future__ import annotations

import datetime as _dt
import enum
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import attrs

from ._breaker import BreakerStatus
from ._export import _DATA, _NAMES, _export, _plugin_status, _redacted_repr, jsonable
from ._latency import LatencyHistogram
from ._lifecycle import LifecycleState
from ._redact import shown_id
from ._stacks import HandlerStack

if TYPE_CHECKING:  # pragma: no cover
    from ._letters.sink import DeadLetterSinkStatus
    from ._sources.status import SourceStatus

__all__ = ["DiagnosticKind", "Diagnostic", "DispatchCounters", "ServiceStatus", "ToolCounters",
           "ToolStatus", "HostStatus", "DeadLetter", "REJECTION_REASONS", "jsonable"]


class DiagnosticKind(str, enum.Enum):
    """What a diagnostic (or a typed error) is about; values are lower snake-case."""

    LIFECYCLE = "lifecycle"
    INVALID_EVENT = "invalid_event"
    QUEUE_FULL = "queue_full"
    BATCH_REJECTED = "batch_rejected"
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
    SOURCE_FAILED = "source_failed"
    SOURCE_UNAVAILABLE = "source_unavailable"
    SOURCE_NOT_FOUND = "source_not_found"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    BREAKER = "breaker"
    TOOL_UNAVAILABLE = "tool_unavailable"
    EVENT_EXPIRED = "event_expired"
    REDRIVE_REFUSED = "redrive_refused"

    def __str__(self) -> str:
        return self.value


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


@attrs.frozen
class Diagnostic:
    """One recorded incident: a rejection, a failed or timed-out event, a transition.

    ``message`` is already bounded and redacted: it never carries a secret.
    ``correlation_id`` is the event's id as it may be shown: redacted, on one
    line (control characters become spaces), at most 129 characters.
    """

    kind: DiagnosticKind
    state: LifecycleState
    message: str
    at: _dt.datetime = attrs.field(factory=_utcnow)
    correlation_id: Optional[str] = attrs.field(default=None, converter=shown_id)

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain JSON types; never raises."""
        return _export(self)


@attrs.frozen
class DispatchCounters:
    """Cumulative counts over a service's whole life in its host, across restarts.

    At every snapshot ``enqueued == succeeded + failed + timed_out + dropped +
    expired + queue_depth + in_flight`` and ``dispatched == succeeded + failed +
    timed_out + in_flight``. ``expired``: events whose deadline (``expires_at``,
    ``max_queue_age``) passed while they waited; never handed to the plugin.
    """

    enqueued: int = 0
    dispatched: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    rejected: int = 0
    dropped: int = 0
    retried: int = 0
    expired: int = 0


#: Why ``submit`` refused an event: the ``kind`` of the error it raised.
REJECTION_REASONS: Tuple[DiagnosticKind, ...] = (
    DiagnosticKind.QUEUE_FULL, DiagnosticKind.INVALID_EVENT,
    DiagnosticKind.SERVICE_UNAVAILABLE, DiagnosticKind.SERVICE_STOPPED,
    DiagnosticKind.SERVICE_FAILED)


@attrs.frozen
class ServiceStatus:
    """One consistent snapshot of a service, as returned by ``ServiceHandle.status()``.

    ``rejections`` splits ``counters.rejected`` by the rejecting error's ``kind``;
    ``queue_wait`` and ``handler_time`` are None unless ``latency_histograms``.
    """

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
    #: The plugin's own ``status()`` as a redacted, bounded copy in JSON types.
    plugin_status: Optional[Mapping[str, Any]] = attrs.field(
        default=None, converter=_plugin_status, metadata={_DATA: True})
    restarts: int = 0
    rejections: Mapping[DiagnosticKind, int] = attrs.field(
        factory=functools.partial(dict.fromkeys, REJECTION_REASONS, 0), metadata={_NAMES: True})
    queue_wait: Optional[LatencyHistogram] = None
    handler_time: Optional[LatencyHistogram] = None
    restart_backoff: Optional[float] = None  #: the latest automatic restart's wait (s)
    breaker: Optional[BreakerStatus] = None  #: None without ``ServiceConfig.breaker``
    #: Where the handler is, while it is overdue or has run ``stack_after``
    #: seconds (``ServiceConfig.stack_after``); else None.
    handler_stack: Optional[HandlerStack] = None

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain JSON types that ``json.dumps`` accepts; never raises."""
        return _export(self)


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
    ``call_time``: admission -> outcome of every call that succeeded, failed or timed out.
    """

    name: str
    in_flight: int
    max_concurrency: Optional[int]
    counters: ToolCounters
    last_error: Optional[Diagnostic]
    overdue: int = 0
    abandoned: int = 0
    call_time: LatencyHistogram = attrs.field(factory=LatencyHistogram)
    breaker: Optional[BreakerStatus] = None  #: None without ``add_tool(breaker=...)``

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain JSON types; never raises."""
        return _export(self)


@attrs.frozen
class HostStatus:
    """Snapshots of every service, tool and source of a host, keyed by name.

    ``forked`` is True for a host inherited through ``os.fork()``: in that process
    it runs nothing, and every service and tool reports a HOST_FORKED diagnostic.
    ``listener_backlog_dropped``: lifecycle notifications never delivered because
    the listeners' backlog was full (see ``PluginHost.add_listener``).
    ``dead_letter_sink``: the ``dead_letter_sink``'s counters, None without one.
    """

    services: Mapping[str, ServiceStatus] = attrs.field(factory=dict, metadata={_NAMES: True})
    tools: Mapping[str, ToolStatus] = attrs.field(factory=dict, metadata={_NAMES: True})
    forked: bool = False
    #: Snapshots of the host's sources (``SourceStatus``), keyed by name.
    sources: Mapping[str, "SourceStatus"] = attrs.field(factory=dict, metadata={_NAMES: True})
    listener_backlog_dropped: int = 0
    dead_letter_sink: Optional["DeadLetterSinkStatus"] = None

    def to_dict(self) -> Dict[str, Any]:
        """Every field, services, tools and sources keyed by name, in JSON types;
        never raises."""
        return _export(self)


@attrs.frozen
class DeadLetter:
    """An accepted event that did not succeed: failed, timed out, or dropped.

    ``event`` is the event as it was submitted, to act on (resubmit, inspect);
    ``to_dict()`` and the repr redact it like every export.
    """

    service: str
    event: Any = attrs.field(repr=_redacted_repr, metadata={_DATA: True})
    diagnostic: Diagnostic

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain JSON types, the event's payload redacted; never raises."""
        return _export(self)
