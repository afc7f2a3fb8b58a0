"""The replacing part of ``PluginHost``: ``replace_service`` and
``reload_entry_points`` (README: Replacing a plugin)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from loguru import logger

from . import errors
from ._diagnostics import ServiceStatus
from ._discovery import DEFAULT_GROUP, LoadReport, entry_points, load_error
from ._kinds import Kind, classify
from ._plugin import ServicePluginLike
from ._redact import sanitize
from ._typevars import ResultT

if TYPE_CHECKING:  # pragma: no cover
    from ._backend import Backend
    from ._service import ServiceHandle
    from ._service.dispatch import PluginSession
    from ._watchdog import Watchdog

__all__ = ["HostReplace"]


class HostReplace:
    """What ``PluginHost`` offers for replacing plugins (a part of it)."""

    if TYPE_CHECKING:  # pragma: no cover - set by PluginHost.__init__
        _backend: Backend
        _watchdog: Watchdog
        _forked: bool
        _closed: bool
        #: Services added by ``load_entry_points``: name -> (group, the plugin class).
        _from_entry_points: Dict[str, Tuple[str, Any]]

        def _forked_error(self) -> errors.HostForked: ...

        def service(self, name: str) -> ServiceHandle[Any]: ...

        def _session(self, name: str, plugin: Any, factory: Any,
                     config: Any) -> PluginSession: ...

    def replace_service(self, name: str,
                        plugin_or_factory: Union[ServicePluginLike[ResultT],
                                                 Callable[[], ServicePluginLike[ResultT]]],
                        *, timeout: Optional[float] = None) -> ServiceStatus:
        """Replace the plugin of service ``name`` without losing its queue.

        A RUNNING service keeps taking events throughout (it stays RUNNING: no
        ``ServiceUnavailable``, no transition for listeners). The event in flight
        finishes on the old plugin; then, on its worker, the old plugin's
        ``stop()`` runs, and on a fresh worker thread the new plugin's
        ``start()`` (on Ray: a new actor of the new class); the queued events go
        to it in order. Counters go on; ``status().replacements`` counts it.
        Returns the status once the new ``start()`` returned.

        ``timeout`` (else the service's ``stop_timeout``) bounds the wait for the
        old plugin to let go (its event in flight, then its ``stop()``): past it
        the handler is cancelled (``ctx.cancelled``) and given ``cancel_grace``;
        past that its event times out (``DispatchTimeout``) and the service
        fails. The new ``start()`` is bounded by ``start_timeout``. A
        failure while replacing (the new ``start()`` raising or late, or the old
        plugin not letting go) leaves the service FAILED with the new plugin
        installed (the old one is not restored) and its queue kept: a
        ``RestartPolicy`` restarts the new plugin, or a second replacement
        recovers it; ``stop()`` or ``close()`` drops the queue. Raises
        ``ServiceFailed`` then.

        A READY or STOPPED service has its plugin swapped, for its next start.
        A FAILED one is restarted with the new plugin (like ``restart()``; its
        kept queue goes to it). ``LifecycleError`` while STARTING or STOPPING,
        while another replacement is under way, or from the service's own
        callbacks; ``ServiceStopped`` if a ``stop()`` came before the old plugin
        let go (the stop wins: the old plugin drains and stops); a stop that
        comes later drains through the new plugin. ``ServiceNotFound``,
        ``TypeError`` for what is no plugin, ``HostClosed``, ``HostForked``.
        The service keeps its config.
        """
        handle = self.service(name)  # ServiceNotFound, HostForked
        if self._closed:
            raise errors.HostClosed("host is closed; replace_service() of %r refused" % name,
                                    service=name)
        kind, value = classify(plugin_or_factory, "service")
        plugin, factory = (value, None) if kind is Kind.SERVICE_INSTANCE else (None, value)
        session = self._session(name, plugin, factory, handle.config)
        return handle._replace(session, timeout)

    def reload_entry_points(self, group: str = DEFAULT_GROUP, *,
                            timeout: Optional[float] = None) -> LoadReport:
        """Replace (:meth:`replace_service`, each bounded by ``timeout``) every
        service that :meth:`load_entry_points` added from ``group`` whose entry
        point now resolves to a different class, one after the other.

        The report's ``loaded`` names the services replaced, in entry-point
        order; ``errors`` has a ``PluginLoadError`` per entry point that could
        not be resolved (or is no longer a service plugin) or whose replacement
        raised (its cause). Entry points new to the group, or gone from it, and
        tools are left as they are; a module already imported is not re-imported
        (``importlib.reload`` it first, or let the entry point name a new one).
        """
        if self._forked:
            raise self._forked_error()
        replaced: List[str] = []
        broken: Dict[str, errors.PluginLoadError] = {}
        for entry in entry_points(group):
            name = entry.name
            known = self._from_entry_points.get(name)
            if known is None or known[0] != group:
                continue
            try:
                kind, plugin = classify(entry.load())
                if kind is Kind.TOOL:
                    raise TypeError("%s is no longer a service plugin" % entry.value)
                if plugin is known[1]:
                    continue
                self.replace_service(name, plugin, timeout=timeout)
            except errors.HostClosed:
                raise
            except Exception as exc:
                broken[name] = load_error(name, exc)
                if isinstance(exc, errors.ServiceFailed):
                    self._from_entry_points[name] = (group, plugin)  # installed, failed
                continue
            self._from_entry_points[name] = (group, plugin)
            replaced.append(name)
        for name, error in broken.items():
            logger.warning("entry point {} not reloaded: {}", sanitize(name, 128),
                           sanitize(error.reason))
        return LoadReport(tuple(replaced), broken)
