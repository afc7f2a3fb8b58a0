"""What kind of plugin an object is, decided in one place.

A *service* is given as an instance the host runs as is (a ``ServicePlugin``, or
any object with a ``handle_ingress``), or as a *factory* built once per start (a
class, or a zero-argument callable). A *tool* is a ``(request, ctx)`` callable: a
``ToolPlugin`` instance (its ``invoke``), a ``ToolPlugin`` class (instantiated
once), or any other callable.

``add_service`` and ``add_tool`` know which one they were given and ask for it;
an entry point or a command-line spec declares nothing, and the object's own
class decides. Every refusal is a ``TypeError`` saying what the object lacks.
"""
from __future__ import annotations

import enum
from typing import Any, Callable, Literal, Optional, Tuple

from ._context import ToolContext
from ._plugin import ServicePlugin, ToolPlugin

__all__ = ["Kind", "classify"]


class Kind(enum.Enum):
    """The three kinds of plugin ``classify`` tells apart."""

    SERVICE_INSTANCE = "service instance"  # run as is
    SERVICE_FACTORY = "service factory"  # a class or zero-argument callable, one per start
    TOOL = "tool"  # a (request, ctx) callable

    @property
    def role(self) -> str:
        """``"service"`` or ``"tool"``: the registry it goes to."""
        return "tool" if self is Kind.TOOL else "service"


def classify(obj: Any, want: Optional[Literal["service", "tool"]] = None) -> Tuple[Kind, Any]:
    """``(kind, value)`` for ``obj``, or ``TypeError`` for what is no such plugin.

    ``want="service"`` (``add_service``): ``SERVICE_INSTANCE`` with ``obj``, or
    ``SERVICE_FACTORY`` with the class or callable; a ``ServicePlugin`` (class or
    instance) must implement ``handle_ingress``.

    ``want="tool"`` (``add_tool``): ``TOOL`` with the callable to run; a
    ``ToolPlugin`` must implement ``invoke``, and a ``ToolPlugin`` class is
    instantiated here, once.

    ``want=None`` (entry points, the command line): the kind the object
    declares. A ``ServicePlugin`` subclass is a factory, an instance is run as is;
    a ``ToolPlugin`` subclass (instantiated here, once), a ``ToolPlugin`` instance
    or any other callable is a tool. ``value`` is what to register; whether it
    implements its method is checked when it is registered.
    """
    if want is None:
        return _declared(obj)
    if want == "service":
        return _service(obj)
    if want == "tool":
        return Kind.TOOL, _tool(obj)
    raise ValueError("want is 'service', 'tool' or None, got %r" % (want,))


def _declared(obj: Any) -> Tuple[Kind, Any]:
    if isinstance(obj, type):
        if issubclass(obj, ServicePlugin):
            return Kind.SERVICE_FACTORY, obj
        if issubclass(obj, ToolPlugin):
            return Kind.TOOL, obj()  # instantiated once
        raise TypeError("class %s is neither a ServicePlugin nor a ToolPlugin subclass"
                        % obj.__qualname__)
    if isinstance(obj, ServicePlugin):
        return Kind.SERVICE_INSTANCE, obj
    if isinstance(obj, ToolPlugin) or callable(obj):
        return Kind.TOOL, obj
    raise TypeError("%s object is not a plugin" % type(obj).__name__)


def _service(obj: Any) -> Tuple[Kind, Any]:
    if isinstance(obj, type):
        if issubclass(obj, ServicePlugin) and obj.handle_ingress is ServicePlugin.handle_ingress:
            raise TypeError("%s does not implement handle_ingress" % obj.__name__)
        return Kind.SERVICE_FACTORY, obj
    if isinstance(obj, ServicePlugin) or hasattr(obj, "handle_ingress"):
        if type(obj).handle_ingress is ServicePlugin.handle_ingress:
            raise TypeError("%s does not implement handle_ingress" % type(obj).__name__)
        return Kind.SERVICE_INSTANCE, obj
    if callable(obj):
        return Kind.SERVICE_FACTORY, obj
    raise TypeError("add_service takes a ServicePlugin, a plugin class or a zero-argument "
                    "factory, got %r" % (obj,))


def _tool(obj: Any) -> Callable[[Any, ToolContext], Any]:
    if isinstance(obj, type) and issubclass(obj, ToolPlugin):
        obj = obj()
    if isinstance(obj, ToolPlugin):
        if type(obj).invoke is ToolPlugin.invoke:
            raise TypeError("%s does not implement invoke" % type(obj).__name__)
        invoke: Callable[[Any, ToolContext], Any] = obj.invoke
        return invoke
    if callable(obj):
        return obj  # type: ignore[no-any-return]
    raise TypeError("a tool is a ToolPlugin or a callable (request, ctx), got %r" % (obj,))
