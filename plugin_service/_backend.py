"""The seam between the host and where plugins run.

A ``Backend`` gives each service a ``PluginSession`` (its plugin for each life,
and the dispatcher that hands that plugin its events) and may run tools
elsewhere. ``ThreadBackend``, the default, runs plugins on the host's own
threads; ``RayBackend`` (``plugin_service._ray``) runs each service in an actor
process behind the same API.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from . import errors
from ._config import ServiceConfig
from ._context import ToolContext
from ._service import (
    BreakerDispatcher,
    Dispatcher,
    Failure,
    PluginSession,
    SerialDispatcher,
    ServiceHandle,
)

ToolCallable = Callable[[Any, ToolContext], Any]


class Backend(Protocol):
    """Where a host's plugins run."""

    def session(self, name: str, plugin: Any, factory: Optional[Callable[[], Any]],
                config: ServiceConfig, watchdog: Any = None) -> PluginSession:
        """The session of service ``name``: ``plugin`` (one instance for every
        life) or ``factory`` (called once per life), the other None. Called on
        the thread adding the service."""

    def remote_tool(self, fn: ToolCallable) -> ToolCallable:
        """A tool callable that runs ``fn`` on this backend (``add_tool(remote=True)``);
        ``ValueError`` if the backend cannot."""

    def close(self) -> None:
        """Release what the backend holds, once the host's services and tools are done."""


def handler_failure(exc: BaseException) -> Failure:
    """What a handler's exception means on every backend: one that says its
    plugin crashed (``errors.PluginCrashed``: a dead actor, or a plugin driving a
    process of its own) fails the service at once, whatever ``fail_after`` says."""
    # never isinstance(): a lying __class__ runs plugin code
    return Failure.raised(exc, fatal=issubclass(type(exc), errors.PluginCrashed))


class ThreadSession:
    """Plugins on the service's own worker thread: the default session."""

    __slots__ = ("shared", "_plugin", "_factory")

    def __init__(self, plugin: Any, factory: Optional[Callable[[], Any]]) -> None:
        self.shared = factory is None
        self._plugin = plugin
        self._factory = factory

    def new_plugin(self) -> Any:
        return self._plugin if self._factory is None else self._factory()

    def dispatcher(self, service: ServiceHandle, plugin: Any) -> Dispatcher:
        if service._breaker is not None:  # chosen once per life: the plain loop is untouched
            return BreakerDispatcher(service, plugin, handler_failure)
        return SerialDispatcher(service, plugin, handler_failure)


class ThreadBackend:
    """Plugins on the host's threads: each service's on its worker thread."""

    def session(self, name: str, plugin: Any, factory: Optional[Callable[[], Any]],
                config: ServiceConfig, watchdog: Any = None) -> ThreadSession:
        return ThreadSession(plugin, factory)

    def remote_tool(self, fn: ToolCallable) -> ToolCallable:
        raise ValueError("remote=True runs a tool as a Ray task: give the host "
                         "backend=RayBackend(...)")

    def close(self) -> None:
        """Nothing to release: the host joins its own threads."""


THREADS = ThreadBackend()
