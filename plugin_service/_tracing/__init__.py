"""OpenTelemetry spans for events and tool calls (``PluginHost(tracing=...)``,
the ``otel`` extra).

Off by default, and then nothing here is imported nor called: a host without
tracing runs the same submit, dispatch and settle code as before. A host with
tracing binds traced parts once, where a service or tool is added: the
service's ``_enqueue``/``_enqueue_many``/``_admit`` in the handle's own
``__dict__`` (making traced futures), a thread session whose dispatcher calls
a traced ``handle_ingress``, and a ``TracedTool``. The library never sets the
global tracer provider: it uses the one it was given, or the global one.
"""
from __future__ import annotations

from typing import Any, Optional

from .spans import Tracing

__all__ = ["Tracing", "tracing_for"]


def tracing_for(tracing: Any) -> Optional[Tracing]:
    """What ``PluginHost(tracing=...)`` was given, made ready: None for False or
    None (off), the global tracer provider's tracer for True, or the tracer of
    the ``TracerProvider`` given. ``TypeError`` for anything else;
    ``ModuleNotFoundError`` naming the extra when OpenTelemetry is missing."""
    if tracing is None or tracing is False:
        return None
    if tracing is not True and not callable(getattr(tracing, "get_tracer", None)):
        raise TypeError("tracing must be True, False or an OpenTelemetry TracerProvider, "
                        "got %r" % (tracing,))
    try:
        from opentelemetry import trace
    except ImportError:
        raise ModuleNotFoundError(
            "PluginHost(tracing=...) needs OpenTelemetry: "
            "pip install 'plugin_service[otel]'", name="opentelemetry") from None
    from .. import __version__
    if tracing is True:
        # A ProxyTracer until the application sets a global provider: then it
        # delegates to that one (we never set it ourselves).
        tracer = trace.get_tracer("plugin_service", __version__)
    else:
        tracer = tracing.get_tracer("plugin_service", __version__)
    return Tracing(tracer)
