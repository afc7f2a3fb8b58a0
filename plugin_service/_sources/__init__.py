"""Host-owned event sources: the base class, the built-in sources, and the
machinery that drives each on a thread of its own."""
from .base import IngressSource, SourceContext, SourceExhausted
from .builtin import IterableSource, TimerSource
from .handle import SourceHandle
from .reconnect import ReconnectPolicy
from .registry import SourceRegistry
from .status import SourceState, SourceStatus
from .websocket import WebSocketSource

__all__ = ["IngressSource", "SourceContext", "SourceExhausted", "IterableSource",
           "TimerSource", "SourceHandle", "ReconnectPolicy", "SourceRegistry",
           "SourceState", "SourceStatus", "WebSocketSource"]
