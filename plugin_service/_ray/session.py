"""The ``PluginSession`` of a service on Ray: what its worker runs each life."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from .._config import ServiceConfig
from .._service import ServiceHandle
from .pipeline import PipelineDispatcher
from .proxy import _ActorProxy

if TYPE_CHECKING:  # pragma: no cover
    from .backend import RayBackend


class RaySession:
    """The ``PluginSession`` of one service on Ray: a fresh proxy, and with it a
    fresh actor, for every life; its events go through a ``PipelineDispatcher``."""

    __slots__ = ("shared", "_backend", "_name", "_target", "_is_factory", "_config",
                 "_watchdog", "_window")

    def __init__(self, backend: "RayBackend", name: str, plugin: Any,
                 factory: Optional[Callable[[], Any]], config: ServiceConfig,
                 watchdog: Any) -> None:
        self.shared = False  # each life has its own actor, so nothing is shared
        self._backend = backend
        self._name = name
        self._is_factory = factory is not None
        self._target: Any = factory if factory is not None else plugin
        self._config = config
        self._watchdog = watchdog
        pipeline = backend.pipeline
        self._window = config.queue_size if pipeline is None else pipeline

    def new_plugin(self) -> _ActorProxy:
        return _ActorProxy(self._backend, self._name, self._target, self._is_factory,
                           self._config, self._watchdog, self._window)

    def dispatcher(self, service: "ServiceHandle", plugin: Any) -> "PipelineDispatcher":
        return PipelineDispatcher(service, plugin, self._window)

