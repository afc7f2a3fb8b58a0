"""The Ray backend: each service plugin runs in its own Ray actor process.

Everything the host promises stays on the host side, unchanged: the bounded
ingress queue, validation, serial dispatch, the watchdog's timeouts, counters,
diagnostics, dead letters, lifecycle and restart policy. What moves into the actor
is the plugin itself: a proxy plugin on the service's worker thread forwards
``start``, ``handle_ingress``, ``stop`` and ``status`` to the actor and waits for
the answer. At a deadline the proxy cancels the actor task (``ray.cancel``) and
tells the actor, so ``ctx.cancelled`` turns True inside it. A dead actor process
is a ``PluginCrashed``: the in-flight event fails with ``DispatchFailed`` and the
service fails at once, so a ``RestartPolicy`` brings up a fresh actor.

Nothing of Ray is imported until a ``RayBackend`` is used.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, Dict, Optional

from . import errors
from ._context import DispatchContext, ToolContext
from ._plugin import ServicePlugin

__all__ = ["RayBackend"]

_monotonic = time.monotonic


def _is_loopback(address: Optional[str]) -> bool:
    """None (a local instance) or an address on this machine's loopback."""
    if address is None:
        return True
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _import_ray(local: bool) -> Any:
    if local and "ray" not in sys.modules:
        # Ray reads this at import: off, a local instance registers and listens on
        # 127.0.0.1 instead of the machine's network address (its OSX/Windows mode).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("the Ray backend needs the ray extra: "
                          "pip install 'plugin_service[ray]'") from exc
    return ray


class _PluginActor:
    """Runs inside the actor process: builds the plugin and calls it.

    The actor has two threads (``max_concurrency=2``) so that ``cancel`` and
    ``status`` are answered while a handler runs; the host never sends a second
    ``handle`` before the first returned, so plugin callbacks stay serial.
    """

    def __init__(self, target: Any, is_factory: bool) -> None:
        self._target = target
        self._is_factory = is_factory
        self._plugin: Any = None
        self._ctx: Optional[DispatchContext] = None
        self._idle = threading.Event()
        self._idle.set()

    def start(self) -> list:  # type: ignore[type-arg]
        plugin = self._target() if self._is_factory else self._target
        plugin.start()
        self._plugin = plugin
        return list(getattr(plugin, "ingresses", ()))

    def handle(self, event: Any, remaining: Optional[float]) -> Any:
        deadline = None if remaining is None else _monotonic() + remaining
        ctx = DispatchContext(event, deadline)
        self._ctx = ctx
        self._idle.clear()
        try:
            return self._plugin.handle_ingress(event, ctx)
        finally:
            self._ctx = None
            self._idle.set()

    def cancel(self) -> None:
        ctx = self._ctx
        if ctx is not None:
            ctx._cancel()

    def wait_idle(self, timeout: Optional[float]) -> bool:
        return self._idle.wait(timeout)

    def status(self) -> Any:
        plugin = self._plugin
        return None if plugin is None else plugin.status()

    def stop(self) -> None:
        if self._plugin is not None:
            self._plugin.stop()


class _RemoteTool:
    """A tool run as a Ray task; the pool thread waits for it, so timeouts,
    bulkhead and counters are the host's, as for local tools."""

    def __init__(self, backend: "RayBackend", fn: Callable[[Any, ToolContext], Any]) -> None:
        self._backend = backend
        self._fn = fn
        self._task: Any = None

    def __call__(self, request: Any, ctx: ToolContext) -> Any:
        ray = self._backend._ray()
        if self._task is None:
            self._task = ray.remote(_run_tool).options(num_cpus=0)
        ref = self._task.remote(self._fn, request, ctx.remaining())
        ctx._forward_cancel(lambda: ray.cancel(ref))
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None


def _cause(exc: Any) -> BaseException:
    """The plugin's own exception out of a RayTaskError (its traceback is Ray's)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _run_tool(fn: Callable[[Any, ToolContext], Any], request: Any,
              remaining: Optional[float]) -> Any:
    deadline = None if remaining is None else _monotonic() + remaining
    return fn(request, ToolContext(request, deadline))


class _ActorProxy(ServicePlugin):
    """On the host: one life of one service, backed by one fresh actor."""

    def __init__(self, backend: "RayBackend", name: str, target: Any, is_factory: bool,
                 grace: Optional[float]) -> None:
        self._backend = backend
        self._name = name
        self._target = target
        self._is_factory = is_factory
        self._grace = grace
        self._actor: Any = None
        self.ingresses: Any = ()

    def _call(self, ref: Any) -> Any:
        ray = self._backend._ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None
        except ray.exceptions.RayActorError as exc:
            raise errors.PluginCrashed(
                "the actor process of service %r died: %s" % (self._name, exc),
                service=self._name) from exc

    def start(self) -> None:
        self._actor = self._backend._new_actor(self._name, self._target, self._is_factory)
        self.ingresses = tuple(self._call(self._actor.start.remote()))

    def handle_ingress(self, event: Any, ctx: DispatchContext) -> Any:
        ray = self._backend._ray()
        actor = self._actor
        ref = actor.handle.remote(event, ctx.remaining())
        cancelled_at: list = []  # type: ignore[type-arg]

        def cancel() -> None:
            # Tell the actor (ctx.cancelled turns True there) without ray.cancel:
            # a handler cancelled by stop still returns its value.
            cancelled_at.append(_monotonic())
            actor.cancel.remote()

        ctx._forward_cancel(cancel)
        if self._grace is None:
            return self._call(ref)
        # Serial dispatch: wait for the handler to return. Once cancelled, it has
        # the grace; past it the actor is killed, which a thread could never be.
        while True:
            wait = None if not cancelled_at else max(
                0.0, cancelled_at[0] + self._grace - _monotonic())
            if wait is None and ctx.deadline is not None:
                # Until the deadline; the watchdog's cancel lands just after it.
                wait = max(0.01, ctx.deadline - _monotonic())
            ready, _ = ray.wait([ref], timeout=wait)
            if ready:
                return self._call(ref)
            if cancelled_at and _monotonic() >= cancelled_at[0] + self._grace:
                ray.kill(actor, no_restart=True)
                raise errors.PluginCrashed(
                    "service %r: the actor was killed: its handler ignored cancellation "
                    "for %.3gs" % (self._name, self._grace), service=self._name)

    def status(self) -> Any:
        if self._actor is None:
            return None
        try:
            return self._backend._ray().get(self._actor.status.remote(), timeout=1.0)
        except Exception:
            return None

    def stop(self) -> None:
        actor, self._actor = self._actor, None
        if actor is None:
            return
        try:
            self._call(actor.stop.remote())
        finally:
            self._backend._ray().kill(actor, no_restart=True)
            self._backend._forget_actor(actor)


class RayBackend:
    """Run every service of a host as a Ray actor, behind the same ``PluginHost`` API.

    ``address=None`` starts (or joins) a local Ray instance bound to loopback; an
    address joins an existing cluster. ``actor_options`` go to
    ``ActorClass.options()`` (``num_cpus``, ``memory``...). Plugins (instances or
    factories), events and results must be picklable.
    """

    def __init__(self, address: Optional[str] = None, namespace: str = "plugin_service",
                 actor_options: Optional[Dict[str, Any]] = None,
                 init_options: Optional[Dict[str, Any]] = None) -> None:
        self.address = address
        self.namespace = namespace
        self.actor_options = dict(actor_options or {})
        self.init_options = dict(init_options or {})
        self._lock = threading.Lock()
        self._module: Any = None
        self._actor_class: Any = None
        self._started_ray = False
        self._actors: Dict[int, Any] = {}  # every actor made, until killed

    def __repr__(self) -> str:
        return "RayBackend(address=%r, namespace=%r)" % (self.address, self.namespace)

    def _ray(self) -> Any:
        module = self._module
        if module is not None:
            return module
        with self._lock:
            if self._module is None:
                ray = _import_ray(local=_is_loopback(self.address))
                if not ray.is_initialized():
                    options: Dict[str, Any] = {"namespace": self.namespace,
                                               "include_dashboard": False,
                                               "log_to_driver": False}
                    if self.address is not None:
                        options["address"] = self.address
                    options.update(self.init_options)
                    ray.init(**options)
                    self._started_ray = True
                self._actor_class = ray.remote(_PluginActor)
                self._module = ray
            return self._module

    def _new_actor(self, name: str, target: Any, is_factory: bool) -> Any:
        self._ray()
        options = {"max_concurrency": 2, "num_cpus": 0}
        options.update(self.actor_options)
        actor = self._actor_class.options(**options).remote(target, is_factory)
        with self._lock:
            self._actors[id(actor)] = actor
        return actor

    def _forget_actor(self, actor: Any) -> None:
        with self._lock:
            self._actors.pop(id(actor), None)

    def service_factory(self, name: str, plugin: Any, factory: Optional[Callable[[], Any]],
                        grace: Optional[float]) -> Callable[[], Any]:
        """A factory of host-side proxies: one fresh actor per life of the service."""
        # Start Ray here, on the thread adding the service (usually the main one):
        # Ray ties the processes it spawns to the spawning thread, so a worker
        # thread that starts it would take it down when its life ends.
        self._ray()
        target, is_factory = (factory, True) if factory is not None else (plugin, False)

        def new_proxy() -> _ActorProxy:
            return _ActorProxy(self, name, target, is_factory, grace)

        return new_proxy

    def remote_tool(self, fn: Callable[[Any, ToolContext], Any]
                    ) -> Callable[[Any, ToolContext], Any]:
        """A tool callable that runs ``fn`` as a Ray task."""
        return _RemoteTool(self, fn)

    def close(self) -> None:
        """Kill every actor this backend made that is still alive (a FAILED
        service's, say), then shut Ray down if this backend started it."""
        with self._lock:
            actors = list(self._actors.values())
            self._actors.clear()
        if self._module is not None:
            for actor in actors:
                try:
                    self._module.kill(actor, no_restart=True)
                except Exception:
                    pass  # already gone
        with self._lock:
            if self._started_ray and self._module is not None:
                self._module.shutdown()
            self._started_ray = False
            self._module = None
