"""plugin_service: run service plugins and tool plugins safely on threads.

The public API is what ``__all__`` lists; errors live in ``plugin_service.errors``.
Logging goes through loguru and is disabled for ``plugin_service`` until the
application calls ``loguru.logger.enable("plugin_service")`` (before or after
this import) or ``log_to_stdlib()``.
"""
from . import errors
from ._breaker import BreakerPolicy, BreakerState, BreakerStatus
from ._config import RestartPolicy, RetryPolicy, ServiceConfig
from ._context import DispatchContext, ToolContext
from ._diagnostics import (
    DeadLetter,
    Diagnostic,
    DiagnosticKind,
    DispatchCounters,
    HostStatus,
    ServiceStatus,
    ToolCounters,
    ToolStatus,
)
from ._discovery import LoadReport
from ._events import Ingress, IngressEvent
from ._future import DispatchFuture
from ._host import PluginHost
from ._latency import LatencyHistogram
from ._letters import DeadLetterSinkStatus, SQLiteDeadLetterSink, StoredDeadLetter
from ._lifecycle import LifecycleState
from ._logs import disable_unless_chosen as _disable_unless_chosen
from ._logs import log_to_stdlib
from ._plugin import ServicePlugin, ToolPlugin
from ._ray import RayBackend
from ._service import ServiceHandle
from ._signals import drain_on_signals
from ._sources import (
    IngressSource,
    IterableSource,
    ReconnectPolicy,
    SourceContext,
    SourceExhausted,
    SourceHandle,
    SourceState,
    SourceStatus,
    TimerSource,
    WebSocketSource,
)
from ._stacks import HandlerStack

_disable_unless_chosen("plugin_service")

__version__ = "0.1.0"

__all__ = [
    "errors",
    "PluginHost",
    "ServiceHandle",
    "ServicePlugin",
    "ToolPlugin",
    "DispatchContext",
    "ToolContext",
    "DispatchFuture",
    "IngressEvent",
    "Ingress",
    "ServiceConfig",
    "RetryPolicy",
    "RestartPolicy",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStatus",
    "LifecycleState",
    "DiagnosticKind",
    "Diagnostic",
    "DispatchCounters",
    "ServiceStatus",
    "HandlerStack",
    "HostStatus",
    "DeadLetter",
    "StoredDeadLetter",
    "SQLiteDeadLetterSink",
    "DeadLetterSinkStatus",
    "ToolCounters",
    "ToolStatus",
    "LatencyHistogram",
    "LoadReport",
    "RayBackend",
    "drain_on_signals",
    "log_to_stdlib",
    "IngressSource",
    "SourceContext",
    "SourceExhausted",
    "SourceHandle",
    "SourceStatus",
    "SourceState",
    "ReconnectPolicy",
    "TimerSource",
    "IterableSource",
    "WebSocketSource",
]
