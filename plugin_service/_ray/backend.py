"""The Ray backend's ``RayBackend``: Ray itself, the actor class, the actors."""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Dict, Optional

from .._checks import positive_int
from .._config import ServiceConfig
from .._context import ToolContext
from .actor import _CONTROL, _OUTCOMES, _STACKS, _PluginActor
from .cluster import is_join_failure, join_error, prepare_auth
from .session import RaySession
from .tools import _RemoteTool


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


#: Actor options that would let plugin calls overlap or reorder: refused.
_SERIAL_OPTIONS = frozenset({"max_concurrency", "concurrency_groups",
                             "allow_out_of_order_execution"})


class RayBackend:
    """Run every service of a host as a Ray actor, behind the same ``PluginHost`` API.

    ``address=None`` starts (or joins) a local Ray instance bound to loopback; an
    address joins an existing cluster (with token authentication, give the
    process the cluster's token in ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``:
    ``RAY_AUTH_MODE=token`` is then set for it). A join that fails raises
    ``BackendUnavailable`` from the first ``add_service``. ``actor_options`` go to
    ``ActorClass.options()`` (``num_cpus``, ``memory``...); ``ValueError`` for
    ``max_concurrency``, ``concurrency_groups`` or ``allow_out_of_order_execution``,
    which would break serial dispatch. Plugins (instances or factories), events
    and results must be picklable.

    ``pipeline`` is how many events of one service are handed to its actor at
    once; by default the service's ``queue_size`` (Ray's ``max_pending_calls``):
    the actor still runs them one at a time and in order, but a round trip no
    longer waits for the one before. What is queued goes in one Ray call (up to
    256 events), each event's outcome coming back as it ends. An event handed
    over cannot be withdrawn with ``cancel()`` any more; ``pipeline=1`` sends one
    event at a time.
    """

    def __init__(self, address: Optional[str] = None, namespace: str = "plugin_service",
                 actor_options: Optional[Dict[str, Any]] = None,
                 init_options: Optional[Dict[str, Any]] = None,
                 pipeline: Optional[int] = None) -> None:
        self.pipeline = positive_int("pipeline", pipeline, optional=True,
                                     phrase="a positive int")
        self.address = address
        self.namespace = namespace
        self.actor_options = dict(actor_options or {})
        refused = sorted(_SERIAL_OPTIONS.intersection(self.actor_options))
        if refused:
            raise ValueError(
                "actor_options may not set %s: a service's plugin calls run one at a "
                "time, in order (the backend sets max_concurrency=1 and in-order "
                "execution itself); scale with more services instead"
                % ", ".join(refused))
        self.init_options = dict(init_options or {})
        self._lock = threading.Lock()
        self._module: Any = None
        self._actor_class: Any = None
        self._started_ray = False
        self._actors: Dict[int, Any] = {}  # every actor made, until killed

    def __repr__(self) -> str:
        return "RayBackend(address=%r, namespace=%r, pipeline=%r)" % (
            self.address, self.namespace, self.pipeline)

    def _ray(self) -> Any:
        module = self._module
        if module is not None:
            return module
        with self._lock:
            if self._module is None:
                mode = prepare_auth(self.address)  # before Ray reads its config
                ray = _import_ray(local=_is_loopback(self.address))
                if not ray.is_initialized():
                    options: Dict[str, Any] = {"namespace": self.namespace,
                                               "include_dashboard": False,
                                               "log_to_driver": False}
                    if self.address is not None:
                        options["address"] = self.address
                    options.update(self.init_options)
                    try:
                        ray.init(**options)
                    except Exception as exc:
                        if is_join_failure(exc):
                            raise join_error(self.address, mode, exc) from exc
                        raise
                    self._started_ray = True
                control = {"concurrency_group": _CONTROL}
                polled = {"concurrency_group": _OUTCOMES}
                self._actor_class = ray.remote(
                    concurrency_groups={_CONTROL: 2, _STACKS: 1, _OUTCOMES: 1})(type(
                        "_PluginActor", (_PluginActor,), {
                            "cancel": ray.method(**control)(_PluginActor.cancel),
                            "status": ray.method(**control)(_PluginActor.status),
                            "stack": ray.method(concurrency_group=_STACKS)(
                                _PluginActor.stack),
                            "outcomes": ray.method(**polled)(_PluginActor.outcomes),
                        }))
                self._module = ray
            return self._module

    def _new_actor(self, name: str, target: Any, is_factory: bool) -> Any:
        self._ray()
        options: Dict[str, Any] = {"num_cpus": 0}
        options.update(self.actor_options)
        # One thread for plugin calls: Ray then runs them in the order sent; the
        # class's own concurrency group answers cancel and status meanwhile.
        options.update(max_concurrency=1, allow_out_of_order_execution=False)
        actor = self._actor_class.options(**options).remote(target, is_factory)
        with self._lock:
            self._actors[id(actor)] = actor
        return actor

    def _forget_actor(self, actor: Any) -> None:
        with self._lock:
            self._actors.pop(id(actor), None)

    def session(self, name: str, plugin: Any, factory: Optional[Callable[[], Any]],
                config: ServiceConfig, watchdog: Any = None) -> RaySession:
        """The session of one service: one fresh actor per life of the service."""
        # Start Ray here, on the thread adding the service (usually the main one):
        # Ray ties the processes it spawns to the spawning thread, so a worker
        # thread that starts it would take it down when its life ends.
        self._ray()
        return RaySession(self, name, plugin, factory, config, watchdog)

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
