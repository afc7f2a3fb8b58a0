"""Host-owned event sources: the base class, the built-in sources, and the
machinery that drives each on a thread of its own."""
from .base import IngressSource, SourceContext, SourceExhausted

__all__ = ["IngressSource", "SourceContext", "SourceExhausted"]
