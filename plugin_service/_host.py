"""The host: owns services (and, later, tools) and their shared machinery."""
from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _fork, errors
from ._backend import THREADS, Backend
from ._checks import positive_int
from ._config import ServiceConfig
from ._dead_letters import DeadLetterBox
from ._diagnostics import DeadLetter, HostStatus
from ._discovery import DEFAULT_GROUP, LoadReport, load_entry_points
from ._events import IngressEvent
from ._future import DispatchFuture
from ._host_replace import HostReplace
from ._host_tools import HostTools
from ._kinds import Kind, classify
from ._letters import HostRedrive, Letters
from ._letters.sink import BACKLOG as _SINK_BACKLOG
from ._lifecycle import LifecycleState
from ._listeners import HostListeners, Listeners
from ._plugin import ServicePluginLike
from ._pool import ToolPool
from ._service import PLUGIN_STATUS_BOUND, Runtime, ServiceHandle
from ._service.dispatch import PluginSession
from ._sources import SourceRegistry
from ._sources.host import HostSources
from ._tool_closing import ToolClosing
from ._tools import Tool, check_grace
from ._tracing import tracing_for
from ._tracing.events import instrument_service, traced_session
from ._typevars import ResultT
from ._watchdog import Watchdog

__all__ = ["PluginHost"]


def _plugin_and_factory(plugin_or_factory: Any) -> Tuple[Any, Optional[Callable[[], Any]]]:
    """Split what ``add_service`` was given into (instance, None) or (None, factory)."""
    kind, value = classify(plugin_or_factory, "service")
    return (value, None) if kind is Kind.SERVICE_INSTANCE else (None, value)


_host_ids = itertools.count(1)
#: How long ``close()`` without a timeout waits for the watchdog's running callback.
WATCHDOG_JOIN_BOUND = 5.0
_DEFAULT_CONFIG = ServiceConfig()  # frozen, so one instance serves every service


class PluginHost(HostSources, HostListeners, HostTools, HostRedrive, HostReplace):
    """Owns service plugins and tool plugins, and the threads that run them.

    Beyond one worker thread per running service, a host starts one watchdog
    thread (timeouts, bounds, restarts), up to ``tool_workers`` daemon threads
    in the shared tool pool, started as calls need them, and with the first
    lifecycle listener one thread that calls every listener. Use it as a context
    manager, or call :meth:`close`, to stop everything and join the threads it
    started. ``tool_cancel_grace`` (seconds, or None for no bound) is how long
    ``close()`` waits for a running tool call past its deadline (or, for a call
    without one, past the start of ``close()``, when it is cancelled).

    ``ValueError`` for a ``tool_workers`` not an int >= 1 or a ``tool_cancel_grace``
    not a number >= 0 or None. ``dead_letter_sink``: an object with ``write(letter)``
    (``SQLiteDeadLetterSink``), handed every dead letter on a thread of the host's,
    at most ``dead_letter_sink_backlog`` waiting (README: Dead-letter sinks). A host
    belongs to the process that created it: in a forked child every call raises
    ``HostForked``, :meth:`status` says so and :meth:`close` does nothing (see
    ``plugin_service.integrations.gunicorn``).

    ``tracing`` (the ``otel`` extra): True gives every event and tool call an
    OpenTelemetry span from the global tracer provider, a ``TracerProvider``
    from that one; False (the default) traces nothing and costs nothing. The
    host never sets the global provider (README: Tracing). ``TypeError`` for
    another value, ``ModuleNotFoundError`` without OpenTelemetry installed.
    """

    def __init__(self, *, tool_workers: int = 4, dead_letter_limit: int = 1000,
                 backend: Any = None, tool_cancel_grace: Optional[float] = 5.0,
                 dead_letter_sink: Any = None,
                 dead_letter_sink_backlog: int = _SINK_BACKLOG, tracing: Any = False) -> None:
        positive_int("tool_workers", tool_workers)
        self._tracing = tracing_for(tracing)
        self._tool_cancel_grace = check_grace(tool_cancel_grace)
        self._lock = threading.Lock()
        self._services: Dict[str, ServiceHandle[Any]] = {}
        self._tools: Dict[str, Tool] = {}
        self._dead_letters = DeadLetterBox(dead_letter_limit)
        host_id = next(_host_ids)
        self._letters = Letters(self._dead_letters, dead_letter_sink,
                                dead_letter_sink_backlog, host_id)
        self._watchdog = Watchdog("plugin_service-watchdog-%d" % host_id)
        self._listeners = Listeners("plugin_service-listeners-%d" % host_id)
        self._runtime = Runtime(self._watchdog, self._dead_letters, self._listeners)
        # Daemon threads the interpreter does not join at exit (see _pool.py).
        self._pool = ToolPool(tool_workers, "plugin_service-tools-%d" % host_id)
        self._closed = False
        # Where plugins run: threads here by default; a RayBackend runs each
        # service in an actor process behind the same API (see _backend.py).
        self._backend: Backend = THREADS if backend is None else backend
        self._given_backend = backend
        self._pid = os.getpid()
        self._forked = False  # set in a forked child only; read before any lock
        self._tool_closing = ToolClosing(self._pool, self._tool_cancel_grace)
        self._sources = SourceRegistry()
        self._from_entry_points: Dict[str, Tuple[str, Any]] = {}  # reload_entry_points
        _fork.track(self)

    def _mark_forked(self) -> None:
        """In a child right after ``os.fork()`` (one thread; no lock may be taken:
        a thread that died in the fork may hold it)."""
        self._forked = True
        for handle in self._services.values():
            handle._forked_from = self._pid
        for tool in self._tools.values():
            tool._forked_from = self._pid  # its futures refuse to wait
        self._sources.mark_forked(self._pid)

    def _forked_error(self) -> errors.HostForked:
        return _fork.forked_error(self._pid)

    @property
    def backend(self) -> Any:
        """The backend services run on: None for threads, or a ``RayBackend``."""
        return self._given_backend

    # ------------------------------------------------------------ services
    def add_service(self, name: str,
                    plugin_or_factory: Union[ServicePluginLike[ResultT],
                                             Callable[[], ServicePluginLike[ResultT]]],
                    config: Optional[ServiceConfig] = None) -> ServiceHandle[ResultT]:
        """Register a service (READY). ``plugin_or_factory`` is a ``ServicePlugin``
        instance, or a class or zero-argument callable built once per start. The
        handle is typed by what the plugin's ``handle_ingress`` returns.

        Raises ``ValueError`` for a duplicate or blank name, ``TypeError`` for
        something that is not a plugin, ``HostClosed`` after :meth:`close`,
        ``HostForked`` in a process forked from the host's.
        """
        if self._forked:
            raise self._forked_error()
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a service name must be a non-blank string, got %r" % (name,))
        if config is None:
            config = _DEFAULT_CONFIG
        elif not isinstance(config, ServiceConfig):
            raise TypeError("config must be a ServiceConfig, got %r" % (config,))
        plugin, factory = _plugin_and_factory(plugin_or_factory)
        session = self._session(name, plugin, factory, config)
        with self._lock:
            if self._closed:
                raise errors.HostClosed("host is closed; cannot add service %r" % name)
            if name in self._services:
                raise ValueError("a service named %r is already registered" % name)
            handle = ServiceHandle(name, session, config, self._runtime)
            if self._tracing is not None:  # bound once: untraced services pay nothing
                instrument_service(handle, self._tracing)
            self._services[name] = handle
        return handle

    def _session(self, name: str, plugin: Any, factory: Any,
                 config: ServiceConfig) -> PluginSession:
        """The backend's session for one service's plugin; on a traced host, one
        whose handlers run in their events' spans (add and replace alike)."""
        session = self._backend.session(name, plugin, factory, config, self._watchdog)
        return session if self._tracing is None else traced_session(session, self._tracing)

    def service(self, name: str) -> ServiceHandle[Any]:
        """The handle of service ``name``; raises ``ServiceNotFound`` (``HostForked``
        in a forked child)."""
        if self._forked:
            raise self._forked_error()
        try:
            return self._services[name]
        except (KeyError, TypeError):
            raise errors.ServiceNotFound(name) from None

    def services(self) -> List[ServiceHandle[Any]]:
        """Every service handle, in the order they were added."""
        if self._forked:
            raise self._forked_error()
        with self._lock:
            return list(self._services.values())

    def submit(self, name: str, event: IngressEvent, *, block: bool = False,
               timeout: Optional[float] = None) -> DispatchFuture[Any]:
        """``service(name).submit(event, ...)``; raises ``ServiceNotFound`` first."""
        return self._producing_to(name).submit(event, block=block, timeout=timeout)

    def post(self, name: str, event: IngressEvent, *, block: bool = False,
             timeout: Optional[float] = None) -> str:
        """``service(name).post(event, ...)``: fire and forget, returns the event's
        correlation id; raises ``ServiceNotFound`` first."""
        return self._producing_to(name).post(event, block=block, timeout=timeout)

    def _producing_to(self, name: str) -> ServiceHandle[Any]:
        # service() without its fork check first: the handle's submit or post
        # checks for a fork, the hot path pays nothing more for it here.
        try:
            return self._services[name]
        except (KeyError, TypeError):
            raise (self._forked_error() if self._forked
                   else errors.ServiceNotFound(name)) from None

    def start_all(self, timeout: Optional[float] = None) -> None:
        """Start every READY service, all at once, each bounded like ``start``.

        After trying all of them, raises ``ServiceFailed`` naming those that failed
        (``services``); ``HostClosed`` after :meth:`close` began. Use :meth:`status`
        for the result.
        """
        if self._forked:
            raise self._forked_error()
        if self._closed:
            raise errors.HostClosed("host is closed; start_all() refused")
        # Every start is requested first and awaited after, so the services start
        # side by side and the host needs no extra thread for it.
        requested = []
        failures: Dict[str, BaseException] = {}
        for handle in self.services():
            if handle.state is LifecycleState.READY:
                try:
                    requested.append((handle, handle._request_start(timeout)))
                except errors.PluginServiceError as exc:  # lost a race with another caller
                    failures[handle.name] = exc
        for handle, life in requested:
            try:
                handle._wait_started(life)
            except errors.PluginServiceError as exc:
                failures[handle.name] = exc
        if failures:
            failed = sorted(failures)
            raise errors.ServiceFailed(
                "services failed to start: %s" % "; ".join(
                    "%s (%s)" % (name, failures[name]) for name in failed),
                services=failed)

    # ----------------------------------------------------------- discovery
    def load_entry_points(self, group: str = DEFAULT_GROUP, *,
                          config: Optional[ServiceConfig] = None) -> LoadReport:
        """Register the plugins installed distributions declare in ``group``.

        A ``ServicePlugin`` subclass becomes a service named after its entry point
        (the class is its factory); a ``ToolPlugin`` instance or subclass
        (instantiated once) or any other callable becomes a tool. A broken entry
        point does not stop the others: it is reported as a ``PluginLoadError``.
        ``config`` applies to every service loaded.
        """
        if self._forked:
            raise self._forked_error()

        def register(name: str, kind: Kind, plugin: Any) -> None:
            if kind is Kind.TOOL:
                self.add_tool(name, plugin)
            else:
                self.add_service(name, plugin, config)
                self._from_entry_points[name] = (group, plugin)

        return load_entry_points(group, register)

    # -------------------------------------------------------- diagnostics
    def dead_letters(self) -> List[DeadLetter]:
        """The newest dead letters (failed, timed-out and dropped events), oldest first."""
        if self._forked:
            raise self._forked_error()
        return self._dead_letters.snapshot()

    def status(self) -> HostStatus:
        """A snapshot of every service; never raises.

        In a forked child it is built without taking any lock: ``forked`` is True
        and every service is FAILED with a HOST_FORKED failure, counting nothing.
        """
        if self._forked:
            return HostStatus(
                services={h.name: h.status() for h in list(self._services.values())},
                tools={t.name: _fork.forked_tool_status(t.name, t._max_concurrency, self._pid)
                       for t in list(self._tools.values())},
                forked=True, sources=self._sources.forked_statuses(self._pid))
        with self._lock:
            tools = list(self._tools.values())
        # Every plugin's status() runs at once, all bounded by one deadline.
        begun = [(h, h._begin_status()) for h in self.services()]
        deadline = time.monotonic() + PLUGIN_STATUS_BOUND
        return HostStatus(services={h.name: h._finish_status(snapshot, call, deadline)
                                    for h, (snapshot, call) in begun},
                          tools={t.name: t.status() for t in tools},
                          sources=self._sources.statuses(),
                          listener_backlog_dropped=self._listeners.dropped,
                          dead_letter_sink=self._letters.status())

    # ------------------------------------------------------------- closing
    def close(self, timeout: Optional[float] = None) -> None:
        """Stop every service (draining, bounded by ``timeout``), shut the tool
        pool down and join the threads the host started. Idempotent.

        Afterwards tool calls raise ``HostClosed`` and submits ``ServiceStopped`` (a
        FAILED service stays FAILED). Tool calls still waiting for a pool thread
        fail with ``HostClosed`` (counted dropped); running calls without a
        deadline are cancelled (``ctx.cancelled``) when close begins. Each running
        call is waited for until its deadline (or the start of close) plus
        ``tool_cancel_grace``, and never past ``timeout``; one still running then is
        abandoned (``ToolStatus.abandoned``; if it had no outcome yet it counts as
        timed out and its future raises ``ToolTimeout``). A thread stuck in plugin
        code past every bound cannot be joined and is left behind: it is a daemon
        thread and does not keep the process from exiting.

        In a process forked from the host's it does nothing: the threads and
        resources are the parent's, and a quiet no-op lets ``with PluginHost()``
        blocks unwind without masking the exception that ended them.
        """
        if self._forked:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = list(self._services.values())
            tools = list(self._tools.values())
        self._sources.close(deadline)  # first: no new items, each read one settled
        self._tool_closing.begin(tools)
        for handle in handles:
            handle._close_begin()
        requested = []
        for handle in handles:
            try:
                requested.append((handle, handle._request_stop(True, timeout)))
            except errors.PluginServiceError:  # pragma: no cover - defensive
                pass
        for handle, life in requested:
            if not life:
                continue  # nothing to wait for (nor a plugin status() to ask)
            handle._await_closed(life, deadline)  # a failure is in its diagnostics
        for handle in handles:  # a failed plugin's cleanup still running
            handle._await_clean_up(deadline)
        current = threading.current_thread()
        threads = [h._worker for h in handles if h._worker is not None
                   and not h._worker_busy()]
        for thread in threads:
            if thread is not current:
                thread.join(None if deadline is None
                            else max(0.0, deadline - time.monotonic()))
        self._tool_closing.end(tools, deadline)  # before the watchdog goes
        # A done-callback still running on the watchdog is not waited for past
        # the deadline (or WATCHDOG_JOIN_BOUND without one): it is a daemon thread.
        self._watchdog.close(WATCHDOG_JOIN_BOUND if deadline is None
                             else max(0.0, deadline - time.monotonic()))
        self._listeners.close(deadline)  # delivers what is pending, within the bound
        self._letters.close(deadline)  # writes what is pending, within the bound
        self._backend.close()

    def _hurry(self) -> None:
        """Cut a drain short (``drain_on_signals``' second signal), before or during
        :meth:`close`: every service drops what it has queued (``ServiceStopped``)
        and cancels a running handler, which gets its ``cancel_grace``; every
        running tool call is cancelled and gets ``tool_cancel_grace`` from now.
        Every source stops at once: an item it holds is dropped, counted."""
        self._sources.stop()
        for handle in self.services():
            try:
                handle._request_stop(False, 0)
            except errors.PluginServiceError:  # pragma: no cover - defensive
                pass
        with self._lock:
            tools = list(self._tools.values())
        self._tool_closing.hurry(tools)

    def __enter__(self) -> "PluginHost":
        if self._forked:
            raise self._forked_error()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
