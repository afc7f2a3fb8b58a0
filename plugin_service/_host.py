"""The host: owns services (and, later, tools) and their shared machinery."""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import errors
from ._config import ServiceConfig
from ._dead_letters import DeadLetterBox
from ._diagnostics import DeadLetter, HostStatus
from ._future import DispatchFuture
from ._lifecycle import LifecycleState
from ._plugin import ServicePlugin
from ._service import ServiceHandle, _Runtime
from ._watchdog import Watchdog

__all__ = ["PluginHost"]


def _plugin_and_factory(plugin_or_factory: Any) -> Tuple[Any, Optional[Callable[[], Any]]]:
    """Split what ``add_service`` was given into (instance, None) or (None, factory)."""
    obj = plugin_or_factory
    if isinstance(obj, type):
        if issubclass(obj, ServicePlugin) and obj.handle_ingress is ServicePlugin.handle_ingress:
            raise TypeError("%s does not implement handle_ingress" % obj.__name__)
        return None, obj
    if isinstance(obj, ServicePlugin) or hasattr(obj, "handle_ingress"):
        if type(obj).handle_ingress is ServicePlugin.handle_ingress:
            raise TypeError("%s does not implement handle_ingress" % type(obj).__name__)
        return obj, None
    if callable(obj):
        return None, obj
    raise TypeError("add_service takes a ServicePlugin, a plugin class or a zero-argument "
                    "factory, got %r" % (obj,))


class PluginHost:
    """Owns service plugins: their lifecycles, queues, worker threads and diagnostics.

    Beyond one worker thread per running service, a host starts one watchdog
    thread (timeouts, bounds, restarts). Use it as a context manager, or call
    :meth:`close`, to stop everything and join the threads it started.
    """

    def __init__(self, *, dead_letter_limit: int = 1000) -> None:
        self._lock = threading.Lock()
        self._services: Dict[str, ServiceHandle] = {}
        self._dead_letters = DeadLetterBox(dead_letter_limit)
        self._watchdog = Watchdog()
        self._runtime = _Runtime(self._watchdog, self._dead_letters)
        self._closed = False

    # ------------------------------------------------------------ services
    def add_service(self, name: str, plugin_or_factory: Any,
                    config: Optional[ServiceConfig] = None) -> ServiceHandle:
        """Register a service (READY). ``plugin_or_factory`` is a ``ServicePlugin``
        instance, or a class or zero-argument callable built once per start.

        Raises ``ValueError`` for a duplicate or blank name, ``TypeError`` for
        something that is not a plugin, ``HostClosed`` after :meth:`close`.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a service name must be a non-blank string, got %r" % (name,))
        if config is None:
            config = ServiceConfig()
        elif not isinstance(config, ServiceConfig):
            raise TypeError("config must be a ServiceConfig, got %r" % (config,))
        plugin, factory = _plugin_and_factory(plugin_or_factory)
        with self._lock:
            if self._closed:
                raise errors.HostClosed("host is closed; cannot add service %r" % name)
            if name in self._services:
                raise ValueError("a service named %r is already registered" % name)
            handle = ServiceHandle(name, plugin, factory, config, self._runtime)
            self._services[name] = handle
        return handle

    def service(self, name: str) -> ServiceHandle:
        """The handle of service ``name``; raises ``ServiceNotFound``."""
        try:
            return self._services[name]
        except (KeyError, TypeError):
            raise errors.ServiceNotFound(name) from None

    def services(self) -> List[ServiceHandle]:
        """Every service handle, in the order they were added."""
        with self._lock:
            return list(self._services.values())

    def submit(self, name: str, event: Any, *, block: bool = False,
               timeout: Optional[float] = None) -> DispatchFuture:
        """``service(name).submit(event, ...)``; raises ``ServiceNotFound`` first."""
        return self.service(name).submit(event, block=block, timeout=timeout)

    def start_all(self, timeout: Optional[float] = None) -> HostStatus:
        """Start every READY service, all at once, each bounded like ``start``.

        After trying all of them, raises ``ServiceFailed`` naming those that failed.
        """
        # Every start is requested first and awaited after, so the services start
        # side by side and the host needs no extra thread for it.
        requested = []
        failures: Dict[str, BaseException] = {}
        for handle in self.services():
            if handle.state is LifecycleState.READY:
                try:
                    requested.append((handle, handle._request_start()))
                except errors.PluginServiceError as exc:  # lost a race with another caller
                    failures[handle.name] = exc
        for handle, life in requested:
            try:
                handle._await_start(life, timeout)
            except errors.PluginServiceError as exc:
                failures[handle.name] = exc
        if failures:
            failed = sorted(failures)
            raise errors.ServiceFailed(
                "services failed to start: %s" % "; ".join(
                    "%s (%s)" % (name, failures[name]) for name in failed),
                services=failed)
        return self.status()

    # -------------------------------------------------------- diagnostics
    def dead_letters(self) -> List[DeadLetter]:
        """The newest dead letters (failed, timed-out and dropped events), oldest first."""
        return self._dead_letters.snapshot()

    def status(self) -> HostStatus:
        """A snapshot of every service; never raises."""
        return HostStatus(services={h.name: h.status() for h in self.services()})

    # ------------------------------------------------------------- closing
    def close(self, timeout: Optional[float] = None) -> None:
        """Stop every service (draining, bounded by ``timeout``) and join the
        threads the host started. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = list(self._services.values())
        for handle in handles:
            handle._close_begin()
        requested = []
        for handle in handles:
            try:
                requested.append((handle, handle._request_stop(True, timeout)))
            except errors.PluginServiceError:  # pragma: no cover - defensive
                pass
        for handle, life in requested:
            try:
                handle._await_stopped(life)
            except errors.PluginServiceError:
                pass  # recorded in the service's diagnostics; close goes on
        for handle in handles:
            worker = handle._worker
            if worker is not None and worker is not threading.current_thread() \
                    and not handle._worker_busy():
                worker.join()
        self._watchdog.close()

    def __enter__(self) -> "PluginHost":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
