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

import collections
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import errors
from ._config import ServiceConfig
from ._context import DispatchContext, ToolContext
from ._plugin import ServicePlugin
from ._service import _RetryCutShort, _Undeliverable

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

    Plugin calls (``start``, ``handle``, ``stop``) share the actor's default
    concurrency group of one thread, so Ray runs them one at a time in the order
    the host sent them (``max_concurrency=1`` keeps Ray's in-order execution).
    ``cancel`` and ``status`` have a group of their own, answered while a handler
    runs. The host sends events ahead, each with its sequence number and batch;
    when one ends unclean (it raised, was cancelled, or returned past its
    deadline) its batch is closed: the rest of that batch is skipped, unrun, and
    the host decides what comes next, as it would with one event at a time.
    """

    def __init__(self, target: Any, is_factory: bool) -> None:
        self._target = target
        self._is_factory = is_factory
        self._plugin: Any = None
        self._lock = threading.Lock()
        self._closed = -1  # batches up to this one are closed: skip their events
        self._ctx: Optional[DispatchContext] = None
        self._ctx_seq = -1

    def start(self) -> list:  # type: ignore[type-arg]
        plugin = self._target() if self._is_factory else self._target
        plugin.start()
        self._plugin = plugin
        return list(getattr(plugin, "ingresses", ()))

    def handle(self, call: Tuple[int, int, Any, Optional[float]]) -> Any:
        """``(ran, value, clean)``, or the handler's exception. A raise, a
        cancelled or a late handler closes the batch: the host learns that outcome
        (and decides on a retry, ``fail_after``...) before anything later runs."""
        seq, batch, event, timeout = call
        with self._lock:
            if batch <= self._closed:
                return _SKIPPED
            deadline = None if timeout is None else _monotonic() + timeout
            ctx = self._ctx = DispatchContext(event, deadline)
            self._ctx_seq = seq
        try:
            value = self._plugin.handle_ingress(event, ctx)
        except BaseException:
            self._close(batch)
            raise
        finally:
            with self._lock:
                self._ctx = None
        clean = not ctx.cancelled and (deadline is None or _monotonic() <= deadline)
        if not clean:
            self._close(batch)
        return True, value, clean

    def _close(self, batch: int) -> None:
        with self._lock:
            if batch > self._closed:
                self._closed = batch

    def cancel(self, seq: int, batch: int) -> None:
        """Cancel event ``seq`` (``ctx.cancelled`` turns True if it runs) and skip
        the rest of its batch; ``seq=-1`` only skips (a recall)."""
        with self._lock:
            if batch > self._closed:
                self._closed = batch
            ctx = self._ctx if self._ctx_seq == seq else None
        if ctx is not None:
            ctx._cancel()

    def status(self) -> Any:
        plugin = self._plugin
        return None if plugin is None else plugin.status()

    def stop(self) -> None:
        if self._plugin is not None:
            self._plugin.stop()

    def on_failure(self, diagnostic: Any) -> None:
        """The service failed because of its events: the plugin's own cleanup."""
        plugin = self._plugin
        if plugin is None:
            return
        hook = getattr(plugin, "on_failure", None)
        if hook is not None:
            hook(diagnostic)
        else:
            plugin.stop()


_SKIPPED = (False, None, False)
_CONTROL = "control"  # the concurrency group of cancel and status


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
    """In the task's process: ``ctx.cancelled`` turns True at the deadline.

    A timer cancels the context at the task's own deadline (a blocking
    ``ctx.wait()`` wakes). The host also ``ray.cancel``s the task then, which
    interrupts its main thread as if by SIGINT once it next runs Python code;
    while the tool runs, that cancels the context instead of raising
    ``KeyboardInterrupt`` wherever the tool happens to be.
    """
    if remaining is None:
        return fn(request, ToolContext(request, None))
    ctx = ToolContext(request, _monotonic() + remaining)
    timer = threading.Timer(remaining, ctx._cancel)
    timer.daemon = True
    timer.start()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: ctx._cancel()) \
        if main else None
    try:
        return fn(request, ctx)
    finally:
        timer.cancel()
        if main:
            signal.signal(signal.SIGINT, previous)


class _ActorProxy(ServicePlugin):
    """On the host: one life of one service, backed by one fresh actor.

    The service's worker drives it through ``_send``/``_receive`` (see
    ``ServiceHandle._pipeline_loop``); ``handle_ingress`` is one round trip, used
    for a retry. Everything sent and not yet answered is in ``_sent``, oldest
    first, all of one batch; a closed batch (a cancel, a recall, an unclean
    answer) makes the next send open a new one.
    """

    def __init__(self, backend: "RayBackend", name: str, target: Any, is_factory: bool,
                 config: ServiceConfig, watchdog: Any = None) -> None:
        self._backend = backend
        self._name = name
        self._target = target
        self._is_factory = is_factory
        self._grace = config.cancel_grace
        pipeline = backend.pipeline
        self._pipeline = config.queue_size if pipeline is None else pipeline
        self._watchdog = watchdog
        self._actor: Any = None
        self.ingresses: Any = ()
        self._lock = threading.Lock()
        self._seq = 0
        self._batch = 0  # the batch of what is in ``_sent``, or of the next send
        self._closed = -1  # the newest batch known closed
        self._sent: "collections.deque[List[Any]]" = collections.deque()
        self._killed: Optional[str] = None
        self._solo = -1  # the seq a single round trip (a retry) waits for

    def _crashed(self, exc: BaseException) -> errors.PluginCrashed:
        why = self._killed or "the actor process of service %r died: %s" % (self._name, exc)
        return errors.PluginCrashed(why, service=self._name)

    def _get(self, ref: Any) -> Any:
        ray = self._backend._ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None
        except ray.exceptions.RayActorError as exc:
            raise self._crashed(exc) from exc

    def start(self) -> None:
        self._actor = self._backend._new_actor(self._name, self._target, self._is_factory)
        self.ingresses = tuple(self._get(self._actor.start.remote()))

    # -------------------------------------------------- the pipelined dispatch
    def _send(self, future: Any, ctx: DispatchContext, timeout: Optional[float]) -> None:
        """Hand one event to the actor; its answer comes from ``_receive``."""
        with self._lock:
            if self._sent:  # join what is outstanding (the loop checked it is open)
                batch = self._sent[-1][2]
            else:
                if self._batch <= self._closed:
                    self._batch = self._closed + 1
                batch = self._batch
            seq = self._seq
            entry: List[Any] = [None, seq, batch, None]  # ref, seq, batch, error
            try:
                entry[0] = self._actor.handle.remote((seq, batch, future.event, timeout))
                self._seq = seq + 1
            except Exception as exc:  # it cannot be pickled, say: never sent
                entry[3] = _undeliverable(exc)
            self._sent.append(entry)
        if entry[3] is None:
            ctx._forward_cancel(lambda: self._cancel(seq, batch))

    def _may_send(self) -> bool:
        """False while anything outstanding belongs to a closed batch: it comes back
        unrun and goes first, so nothing newer may be sent before it."""
        with self._lock:
            return not self._sent or self._sent[0][2] > self._closed

    def _receive(self) -> Any:
        """The oldest answer: ``(ran, value, clean)``, or raise what the handler did."""
        ref, _seq, batch, error = self._sent[0]
        try:
            if error is not None:
                raise error
            return self._answer(ref, batch)
        finally:
            with self._lock:
                self._sent.popleft()

    def _answer(self, ref: Any, batch: int) -> Any:
        """Wait for one answer; anything but a clean one closes its batch."""
        try:
            answer = self._get(ref)
        except BaseException:
            self._close(batch)
            raise
        if not answer[2]:
            self._close(batch)
        return answer

    def _close(self, batch: int) -> None:
        with self._lock:
            if batch > self._closed:
                self._closed = batch

    def _cancel(self, seq: int, batch: int) -> None:
        """The host cancelled event ``seq`` (deadline, stop): tell the actor, so its
        ``ctx.cancelled`` turns True and the rest of its batch is skipped; past the
        grace, kill the actor (a thread could never be)."""
        self._close(batch)
        actor = self._actor
        if actor is None:
            return
        actor.cancel.remote(seq, batch)
        if self._grace is not None and self._watchdog is not None and seq >= 0:
            self._watchdog.schedule(_monotonic() + self._grace, self._kill_if_stuck,
                                    actor, seq)

    def _recall(self, _unused: Any = None) -> None:
        """Skip everything sent and not begun (the service failed, or stops
        without drain)."""
        with self._lock:
            if not self._sent:
                return
            batch = self._sent[-1][2]  # the newest: closing it closes all before
        self._cancel(-1, batch)

    def _kill_if_stuck(self, actor: Any, seq: int) -> None:
        with self._lock:
            stuck = actor is self._actor and (
                self._solo == seq or (bool(self._sent) and self._sent[0][1] == seq))
            if stuck:
                self._killed = ("service %r: the actor was killed: its handler ignored "
                                "cancellation for %.3gs" % (self._name, self._grace or 0.0))
        if stuck:
            self._backend._ray().kill(actor, no_restart=True)

    def handle_ingress(self, event: Any, ctx: DispatchContext) -> Any:
        """One event, one round trip, in a batch of its own (a retry's attempt)."""
        with self._lock:
            self._batch = max(self._batch, self._closed) + 1
            seq, batch = self._seq, self._batch
            try:
                ref = self._actor.handle.remote((seq, batch, event, ctx.remaining()))
            except Exception as exc:
                raise _undeliverable(exc) from None
            self._seq = seq + 1
            self._solo = seq
        ctx._forward_cancel(lambda: self._cancel(seq, batch))
        try:
            ran, value, _clean = self._answer(ref, batch)
        finally:
            self._solo = -1
        if not ran:
            raise _RetryCutShort()  # skipped: a stop or cancel got there first
        return value

    def status(self) -> Any:
        if self._actor is None:
            return None
        try:
            return self._backend._ray().get(self._actor.status.remote(), timeout=1.0)
        except Exception:
            return None

    def stop(self) -> None:
        self._end(lambda actor: actor.stop.remote())

    def on_failure(self, diagnostic: Any) -> None:
        """The service failed because of its events: the plugin's ``on_failure``
        (else ``stop``) in its actor, then the actor goes."""
        self._end(lambda actor: actor.on_failure.remote(diagnostic))

    def _end(self, last_call: Callable[[Any], Any]) -> None:
        actor, self._actor = self._actor, None
        if actor is None:
            return
        try:
            self._get(last_call(actor))
        finally:
            self._backend._ray().kill(actor, no_restart=True)
            self._backend._forget_actor(actor)


def _undeliverable(exc: BaseException) -> _Undeliverable:
    error = _Undeliverable(str(exc))
    error.__cause__ = exc
    return error


class RayBackend:
    """Run every service of a host as a Ray actor, behind the same ``PluginHost`` API.

    ``address=None`` starts (or joins) a local Ray instance bound to loopback; an
    address joins an existing cluster. ``actor_options`` go to
    ``ActorClass.options()`` (``num_cpus``, ``memory``...). Plugins (instances or
    factories), events and results must be picklable.

    ``pipeline`` is how many events of one service are handed to its actor at
    once; by default the service's ``queue_size`` (Ray's ``max_pending_calls``):
    the actor still runs them one at a time and in order, but a round trip no
    longer waits for the one before. An event handed over cannot be withdrawn
    with ``cancel()`` any more; ``pipeline=1`` sends one event at a time.
    """

    def __init__(self, address: Optional[str] = None, namespace: str = "plugin_service",
                 actor_options: Optional[Dict[str, Any]] = None,
                 init_options: Optional[Dict[str, Any]] = None,
                 pipeline: Optional[int] = None) -> None:
        if pipeline is not None and (isinstance(pipeline, bool)
                                     or not isinstance(pipeline, int) or pipeline < 1):
            raise ValueError("pipeline must be a positive int, got %r" % (pipeline,))
        self.pipeline = pipeline
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
        return "RayBackend(address=%r, namespace=%r, pipeline=%r)" % (
            self.address, self.namespace, self.pipeline)

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
                control = {"concurrency_group": _CONTROL}
                self._actor_class = ray.remote(concurrency_groups={_CONTROL: 2})(type(
                    "_PluginActor", (_PluginActor,), {
                        "cancel": ray.method(**control)(_PluginActor.cancel),
                        "status": ray.method(**control)(_PluginActor.status),
                    }))
                self._module = ray
            return self._module

    def _new_actor(self, name: str, target: Any, is_factory: bool) -> Any:
        self._ray()
        options: Dict[str, Any] = {"num_cpus": 0}
        options.update(self.actor_options)
        # One thread for plugin calls: Ray then runs them in the order sent; the
        # class's own concurrency group answers cancel and status meanwhile.
        options.pop("concurrency_groups", None)
        options.update(max_concurrency=1, allow_out_of_order_execution=False)
        actor = self._actor_class.options(**options).remote(target, is_factory)
        with self._lock:
            self._actors[id(actor)] = actor
        return actor

    def _forget_actor(self, actor: Any) -> None:
        with self._lock:
            self._actors.pop(id(actor), None)

    def service_factory(self, name: str, plugin: Any, factory: Optional[Callable[[], Any]],
                        config: ServiceConfig, watchdog: Any = None) -> Callable[[], Any]:
        """A factory of host-side proxies: one fresh actor per life of the service."""
        # Start Ray here, on the thread adding the service (usually the main one):
        # Ray ties the processes it spawns to the spawning thread, so a worker
        # thread that starts it would take it down when its life ends.
        self._ray()
        target, is_factory = (factory, True) if factory is not None else (plugin, False)

        def new_proxy() -> _ActorProxy:
            return _ActorProxy(self, name, target, is_factory, config, watchdog)

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
