"""Base classes plugin authors subclass."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol, Sequence

from ._context import DispatchContext, ToolContext
from ._events import Ingress, IngressEvent
from ._typevars import ResultT_co

__all__ = ["ServicePlugin", "ServicePluginLike", "ToolPlugin"]


class ServicePluginLike(Protocol[ResultT_co]):
    """What ``add_service`` can run, for type checkers: a :class:`ServicePlugin`,
    or any object with these methods (``ingresses``, ``status`` and
    ``on_failure`` are optional, as for ``ServicePlugin``). What its
    ``handle_ingress`` returns is what the service's futures resolve to."""

    def start(self) -> object: ...

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> ResultT_co: ...

    def stop(self) -> object: ...


class ServicePlugin:
    """A long-lived plugin whose lifecycle the host owns.

    Every callback (``start``, ``handle_ingress``, ``stop``, ``on_failure``) runs on
    the service's own worker thread, one at a time, so a plugin needs no locks.
    ``start`` only
    initializes; events arrive later through ``handle_ingress``. The base class
    keeps no state: subclasses need not call ``super().__init__()``.
    """

    #: The ingresses this service accepts events on.
    ingresses: Sequence[Ingress] = ()

    def start(self) -> None:
        """Acquire what the plugin needs. Raising fails the start (state FAILED)."""

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> Any:
        """Handle one event; the return value resolves the event's future."""
        raise NotImplementedError("%s must implement handle_ingress" % type(self).__name__)

    def status(self) -> Optional[Mapping[str, Any]]:
        """Optional plugin-specific status, shown as ``plugin_status``. Called on the
        thread that asks for status, so it must not wait on the handler."""
        return None

    def stop(self) -> None:
        """Release what ``start`` acquired. Raising leaves the service FAILED."""

    def on_failure(self, diagnostic: Any) -> None:
        """The service went FAILED because of its events (``fail_after``, an error
        escaping the worker loop): release what ``start`` acquired. ``diagnostic``
        is the failure. Runs on the worker thread, once per life, bounded by
        ``stop_timeout``; what it raises is recorded, never raised. The default
        calls :meth:`stop`. Not called after a failed ``start()`` or ``stop()``, nor
        for a handler abandoned past ``cancel_grace``."""
        self.stop()


class ToolPlugin:
    """A request-response plugin run on the host's shared tool executor.

    ``invoke`` may run on several pool threads at once (up to the tool's
    ``max_concurrency``). Subclasses need not call ``super().__init__()``.
    """

    def invoke(self, request: Any, ctx: ToolContext) -> Any:
        """Answer one request; the return value is the call's result."""
        raise NotImplementedError("%s must implement invoke" % type(self).__name__)

    def __call__(self, request: Any, ctx: ToolContext) -> Any:
        return self.invoke(request, ctx)
