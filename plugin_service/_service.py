"""One service: its lifecycle, bounded ingress queue, worker thread and accounting.

Everything a service knows sits behind one lock, the mutex of its
``queue.Queue``; the conditions that share it are named for what their waiters
wait on (``not_empty`` for the worker, ``not_full`` for blocked producers,
``state_changed`` for lifecycle callers), as in ``Lib/queue.py``. Every counter
change, every queue change and every transition happens under that lock, so a
``status()`` snapshot is always consistent.

Data flows one way: ``submit`` (caller's thread) -> queue -> worker thread ->
plugin; outcomes come back through the future and the counters. Timeouts, bounds
and restarts are timers on the host's single watchdog thread.
"""
from __future__ import annotations

import collections
import datetime as _dt
import inspect
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import attrs
import tenacity
from loguru import logger

from . import errors
from ._config import ServiceConfig
from ._context import DispatchContext
from ._diagnostics import (
    DeadLetter,
    Diagnostic,
    DiagnosticKind,
    DispatchCounters,
    ServiceStatus,
    jsonable,
)
from ._events import IngressEvent, check_event
from ._fork import forked_error, forked_service_status
from ._future import DispatchFuture
from ._guarded import describe, failure_log
from ._lifecycle import LifecycleState, can_transition
from ._plugin import ServicePlugin
from ._redact import sanitize

__all__ = ["ServiceHandle"]

_K = DiagnosticKind
_READY = LifecycleState.READY
_STARTING = LifecycleState.STARTING
_RUNNING = LifecycleState.RUNNING
_STOPPING = LifecycleState.STOPPING
_STOPPED = LifecycleState.STOPPED
_FAILED = LifecycleState.FAILED
_monotonic = time.monotonic
_UTC = _dt.timezone.utc

#: How many recent diagnostics a service keeps for ``status().diagnostics``.
DIAGNOSTICS_KEPT = 50

# What the worker is doing, for the bounds that the watchdog enforces.
_IN_START, _IN_DISPATCH, _IN_STOP, _IDLE = "start()", "handle_ingress()", "stop()", None
_IN_CLEANUP = "on_failure()"  # or stop(), when the plugin has no on_failure

_Post = List[Tuple[Callable[[Any], Any], Any]]


class _Runtime:
    """What a service needs from its host: the watchdog and the dead-letter box."""

    __slots__ = ("watchdog", "dead_letters")

    def __init__(self, watchdog: Any, dead_letters: Any) -> None:
        self.watchdog = watchdog
        self.dead_letters = dead_letters


#: How long ``status()`` waits for a plugin's own ``status()`` (as on Ray).
PLUGIN_STATUS_BOUND = 1.0
_DEFAULT_STATUS = inspect.getattr_static(ServicePlugin, "status")


class _StatusCall:
    """One call of a plugin's ``status()`` on a daemon thread, waited for at most
    ``PLUGIN_STATUS_BOUND`` seconds; it frees its service's slot when it returns."""

    __slots__ = ("_plugin", "_handle", "_done", "_value", "started")

    def __init__(self, plugin: Any, handle: "ServiceHandle") -> None:
        self._plugin = plugin
        self._handle = handle
        self._done = threading.Event()
        self._value: Any = None
        self.started = _monotonic()

    def start(self) -> None:
        try:
            threading.Thread(target=self._run, name="%s-status" % self._handle.name,
                             daemon=True).start()
        except BaseException:  # no thread to be had: no status, and the slot is free
            self._finish()

    def _run(self) -> None:
        try:
            self._value = jsonable(self._plugin.status())  # its objects' code runs here too
        except BaseException:
            self._value = None
        finally:
            self._finish()

    def _finish(self) -> None:
        self._done.set()
        handle = self._handle
        with handle._lock:
            if handle._status_call is self:
                handle._status_call = None

    def stuck(self) -> bool:
        """Still running a whole bound after it began: later askers are told None
        at once instead of waiting for it again."""
        return _monotonic() - self.started >= PLUGIN_STATUS_BOUND

    def wait(self, deadline: Optional[float] = None) -> Any:
        """Its value, or None if it raised or is not back by ``deadline``
        (default: ``PLUGIN_STATUS_BOUND`` from now)."""
        bound = PLUGIN_STATUS_BOUND if deadline is None else max(0.0, deadline - _monotonic())
        return self._value if self._done.wait(bound) else None


def _has_own_status(plugin: Any) -> bool:
    """Whether ``plugin`` has a ``status()`` other than ServicePlugin's default
    (looked up statically: no descriptor or metaclass code runs)."""
    try:
        found = inspect.getattr_static(type(plugin), "status", None)
    except BaseException:
        return False
    return found is not None and found is not _DEFAULT_STATUS


class _RetryCutShort(Exception):
    """Raised by the backoff sleep when the service stops meanwhile."""


class _AttemptTimedOut(Exception):
    """An attempt was timed out by the watchdog; it is not retried."""


class _Undeliverable(Exception):
    """An event that could not be sent to a plugin in another process (it cannot
    be pickled, say); its cause says why. The handler never saw it."""


def _resolve(post: _Post) -> None:
    """Resolve futures after the lock is released.

    Every one is settled whatever the ones before it met: a done-callback that
    raises even a BaseException is logged by the future itself, and anything else
    (a bug of ours) is logged, redacted, never fatal to the thread resolving.
    """
    for settle, value in post:
        try:
            settle(value)
        except BaseException as exc:
            logger.error("settling a future failed: {}", failure_log(exc))


class _Failure:
    """What the locked settle needs to know of a failed attempt, computed by the
    worker before it takes the lock: the plugin's exception is plugin code."""

    __slots__ = ("why", "cause", "counts", "crashed")

    def __init__(self, value: BaseException) -> None:
        kind = type(value)  # never isinstance(): a lying __class__ runs plugin code
        if issubclass(kind, _Undeliverable):
            # The plugin never saw it: not its failure, no fail_after count.
            cause = value.__cause__ or value
            self.why = "event could not be sent to the plugin: %s" % describe(cause)
            self.cause: BaseException = cause
            self.counts = False
        else:
            self.why = "handler raised %s" % describe(value)
            self.cause = value
            self.counts = True
        # Its process is gone: it cannot serve more, whatever fail_after says.
        self.crashed = issubclass(kind, errors.PluginCrashed)


def _is_instance(value: Any, types: Any) -> bool:
    """``isinstance`` that a plugin's exception cannot make raise."""
    try:
        return isinstance(value, types)
    except BaseException:
        return False


class ServiceHandle:
    """The host's handle on one service plugin.

    Lifecycle calls (``start``, ``stop``, ``restart``) may come from any thread;
    every plugin callback runs on the service's own worker thread, named after the
    service. ``submit`` validates on the caller's thread and never runs plugin code
    except the ingress's ``validate``.
    """

    def __init__(self, name: str, plugin: Any, factory: Optional[Callable[[], Any]],
                 config: ServiceConfig, runtime: _Runtime) -> None:
        self.name = name
        self._config = config
        self._instance = plugin
        self._factory = factory
        self._runtime = runtime
        self._log = logger.bind(service=name, correlation_id=None)

        # The queue's own mutex guards everything below.
        self._queue: "queue.Queue[DispatchFuture]" = queue.Queue(maxsize=config.queue_size)
        self._items: "collections.deque[DispatchFuture]" = self._queue.queue
        self._capacity = config.queue_size
        # Room for the queue: the capacity less the events handed to a remote
        # plugin ahead of their turn (``_ahead``), which still count against it.
        self._room = config.queue_size
        self._ahead = 0
        self._lock = self._queue.mutex
        self._not_empty = self._queue.not_empty
        self._not_full = self._queue.not_full
        self._state_changed = threading.Condition(self._lock)
        self._worker_waiting = False
        self._producers_waiting = 0
        self._room_signalled = False  # not_full was notified since a producer parked

        self._state = _READY
        self._life = 0  # incremented by every start; a worker serves one life
        self._auto_life = False  # this life was started by the restart policy
        self._phase: Optional[str] = _IDLE
        self._plugin: Any = None
        self._ingresses: Dict[str, Any] = {}
        self._worker: Optional[threading.Thread] = None
        self._drain = True
        self._restart_timer: Any = None
        self._restart_when_idle = False
        self._closing = False
        # Lives whose worker owes the plugin its cleanup, with the failure to hand it;
        # and lives whose abandoned handler is owed one if it ever returns.
        self._clean_ups: Dict[int, Diagnostic] = {}
        self._clean_ups_on_return: Dict[int, Diagnostic] = {}
        self._status_call: Optional[_StatusCall] = None  # a plugin status() running
        # Set in a forked child only (by the host): the pid this handle was
        # inherited from. Read before any lock, which a dead thread may hold.
        self._forked_from = 0

        # The event in flight: its future, the attempt's event and context, deadline.
        self._current: Optional[DispatchFuture] = None
        self._current_event: Any = None
        self._current_ctx: Optional[DispatchContext] = None
        self._current_started = 0.0
        self._deadline: Optional[float] = None
        self._timed_out_current = False  # its outcome was decided by the watchdog
        self._timer_at: Optional[float] = None  # when the armed dispatch timer fires
        self._fail_pending: Optional[Diagnostic] = None

        self._enqueued = self._dispatched = self._succeeded = 0
        self._failed = self._timed_out = self._rejected = 0
        self._dropped = self._retried = 0
        self._consecutive_failures = 0
        self._restarts = 0
        self._auto_restarts: "collections.deque[float]" = collections.deque()
        self._last_error: Optional[Diagnostic] = None
        self._failure: Optional[Diagnostic] = None
        self._failure_life = 0  # the life whose failure ``_failure`` is
        self._diagnostics: "collections.deque[Diagnostic]" = collections.deque(
            maxlen=DIAGNOSTICS_KEPT)

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> LifecycleState:
        """The current lifecycle state (FAILED in a forked child)."""
        return _FAILED if self._forked_from else self._state

    @property
    def config(self) -> ServiceConfig:
        return self._config

    def status(self) -> ServiceStatus:
        """One consistent snapshot; never raises, and never waits for the handler.

        ``plugin_status`` comes from the plugin's own ``status()``, called on a
        thread of its own and waited for at most ``PLUGIN_STATUS_BOUND`` (1 s):
        past that, or if it raises, it is None."""
        if self._forked_from:
            return forked_service_status(self.name, self._capacity, self._forked_from)
        return self._finish_status(*self._begin_status())

    def _begin_status(self) -> Tuple[ServiceStatus, Optional["_StatusCall"]]:
        """The locked snapshot, and the call of the plugin's ``status()`` that will
        answer for it: a new one, or the one already running for another asker."""
        try:
            with self._lock:
                snapshot = self._snapshot()
                plugin = self._plugin
        except BaseException as exc:  # pragma: no cover - defensive: status never raises
            return ServiceStatus(self.name, self._state, 0, self._capacity, 0, False,
                                 None, None, DispatchCounters(), (),
                                 {"status_error": sanitize(exc)}, self._restarts), None
        if plugin is None or not _has_own_status(plugin):
            return snapshot, None
        with self._lock:
            running = self._status_call
            if running is not None:  # share it while it is young; a stuck one says None
                return snapshot, None if running.stuck() else running
            call = self._status_call = _StatusCall(plugin, self)
        call.start()
        return snapshot, call

    def _finish_status(self, snapshot: ServiceStatus, call: Optional["_StatusCall"],
                       deadline: Optional[float] = None) -> ServiceStatus:
        if call is None:
            return snapshot
        plugin_status = call.wait(deadline)
        if plugin_status is None:
            return snapshot
        return attrs.evolve(snapshot, plugin_status=plugin_status)

    def _snapshot(self) -> ServiceStatus:
        current = self._current
        in_flight = 1 if current is not None and not self._timed_out_current else 0
        return ServiceStatus(
            name=self.name,
            state=self._state,
            queue_depth=len(self._items) + self._ahead,
            queue_capacity=self._capacity,
            in_flight=in_flight,
            overdue=current is not None and self._timed_out_current,
            last_error=self._last_error,
            failure=self._failure,
            counters=DispatchCounters(
                enqueued=self._enqueued,
                dispatched=self._dispatched,
                succeeded=self._succeeded,
                failed=self._failed,
                timed_out=self._timed_out,
                rejected=self._rejected,
                dropped=self._dropped,
                retried=self._retried,
            ),
            diagnostics=tuple(self._diagnostics),
            plugin_status=None,
            restarts=self._restarts,
        )

    def wait_for(self, state: Any, timeout: Optional[float] = None) -> bool:
        """Block until the service is in ``state``; False if ``timeout`` ran out."""
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        target = LifecycleState(state)
        with self._lock:
            return self._state_changed.wait_for(lambda: self._state is target, timeout)

    def __repr__(self) -> str:
        return "<ServiceHandle %r %s>" % (self.name, self._state.value)

    # ------------------------------------------------------- recording (locked)
    def _note(self, kind: DiagnosticKind, message: Any,
              correlation_id: Optional[str] = None) -> Diagnostic:
        """Record a diagnostic (and log it); every non-lifecycle one is last_error.

        Lifecycle messages are built here from state names alone, so only the
        others, which can carry plugin text, go through ``sanitize``.
        """
        text = message if kind is _K.LIFECYCLE else sanitize(message)
        diagnostic = Diagnostic(kind, self._state, text, _dt.datetime.now(_UTC),
                                correlation_id)
        self._diagnostics.append(diagnostic)
        log = self._log if correlation_id is None else self._log.bind(
            correlation_id=diagnostic.correlation_id)
        if kind is _K.LIFECYCLE:
            log.info("{}", diagnostic.message)
        else:
            self._last_error = diagnostic
            log.warning("{}: {}", kind.value, diagnostic.message)
        return diagnostic

    def _transition(self, target: LifecycleState, why: str = "") -> None:
        """The only place the state changes: checks the table, records, notifies."""
        current = self._state
        if not can_transition(current, target):
            raise errors.LifecycleError(
                "service %r cannot go from %s to %s" % (self.name, current.value, target.value),
                service=self.name, state=current,
            )
        self._state = target
        self._note(_K.LIFECYCLE, "%s -> %s%s" % (current.value, target.value,
                                                 " (%s)" % why if why else ""))
        self._state_changed.notify_all()
        # The worker and blocked producers re-check the state when woken.
        if self._worker_waiting:
            self._worker_waiting = False
            self._not_empty.notify_all()
        if self._producers_waiting:
            self._not_full.notify_all()

    def _reject(self, error: errors.PluginServiceError, event: Any) -> errors.PluginServiceError:
        try:
            cid = event.correlation_id if type(event) is IngressEvent else None
        except Exception:  # pragma: no cover - IngressEvent slots always exist
            cid = None
        with self._lock:
            self._rejected += 1
            self._note(error.kind, str(error), cid if type(cid) is str else None)
        return error

    def _dead_letter(self, event: Any, diagnostic: Diagnostic) -> None:
        self._runtime.dead_letters.add(DeadLetter(self.name, event, diagnostic))

    def _drop_queued(self, error_type: Type[errors.PluginServiceError], post: _Post) -> None:
        """Drop every queued event: counted, dead-lettered, futures fail afterwards."""
        items = self._items
        kind = error_type.kind
        while items:
            future = items.popleft()
            self._dropped += 1
            diagnostic = self._note(kind, "event dropped: service %s" % self._state.value,
                                    future._cid)
            self._dead_letter(future.event, diagnostic)
            post.append((future.set_exception, error_type(
                "service %r %s; queued event dropped" % (self.name, self._state.value),
                service=self.name, state=self._state)))  # type: ignore[call-arg]
        if self._producers_waiting:
            self._not_full.notify_all()

    def _fail(self, diagnostic: Diagnostic, post: _Post, clean_up: bool = False,
              on_return: bool = False) -> None:
        """Go FAILED (once per life); queued events wait for a restart or are dropped.

        ``clean_up``: the failure came from the events (``fail_after``, an error
        escaping the loop) while the worker is between plugin calls, so the worker
        gives the plugin its ``on_failure()`` (else ``stop()``) before it exits.
        ``on_return``: the handler was abandoned inside the plugin; its cleanup is
        owed only if it ever returns."""
        if self._state is _FAILED:
            return
        if self._failure is None or self._failure_life != self._life:
            self._failure = diagnostic  # the first failure of the current life
            self._failure_life = self._life
        if clean_up and self._phase is not _IN_START and self._phase is not _IN_STOP:
            self._owe_clean_up(self._failure)
        elif on_return:
            self._clean_ups_on_return[self._life] = self._failure
        restart = self._restart_allowed()
        self._transition(_FAILED, diagnostic.kind.value)
        self._recall_ahead(post)
        self._fail_pending = None
        if restart and self._config.restart is not None:
            backoff = self._config.restart.backoff
            self._restart_timer = self._runtime.watchdog.schedule(
                _monotonic() + backoff, self._on_restart_due, self._life)
        else:
            self._drop_queued(errors.ServiceFailed, post)

    def _restart_allowed(self) -> bool:
        policy = self._config.restart
        if policy is None or self._closing:
            return False
        if self._phase is _IN_START and not self._auto_life:
            return False  # a failed start is reported to its caller, not restarted
        if self._state is _STOPPING:
            return False  # a failed stop stays FAILED
        recent = self._auto_restarts
        if policy.window is not None:
            horizon = _monotonic() - policy.window
            while recent and recent[0] < horizon:
                recent.popleft()
        return len(recent) < policy.max_restarts

    # ------------------------------------------------------------------ submit
    def submit(self, event: Any, *, block: bool = False,
               timeout: Optional[float] = None) -> DispatchFuture:
        """Validate ``event`` on this thread and enqueue it.

        Returns a :class:`DispatchFuture`. Raises ``ServiceUnavailable`` (READY,
        STARTING), ``ServiceStopped`` (STOPPING, STOPPED), ``ServiceFailed``,
        ``InvalidEvent``, or ``QueueFull`` (at once, or with ``block=True`` after
        waiting up to ``timeout`` seconds for room). Nothing rejected is enqueued.
        ``HostForked`` in a process forked from the host's.
        """
        if self._state is not _RUNNING or self._forked_from:
            if self._forked_from:
                raise forked_error(self._forked_from, self.name)
            raise self._reject(self._state_error(), event)
        reason = check_event(event, self._ingresses)
        if reason is not None:
            raise self._reject(errors.InvalidEvent(reason, service=self.name), event)
        future = DispatchFuture(event, self)
        items = self._items
        with self._lock:
            if self._state is _RUNNING and len(items) < self._room:
                items.append(future)
                self._enqueued += 1
                if self._worker_waiting:
                    # One wake-up is enough: later submits must not pay for notify()
                    # again before the worker has even run.
                    self._worker_waiting = False
                    self._not_empty.notify()
                return future
        return self._submit_slow(future, block, timeout)

    def _submit_slow(self, future: DispatchFuture, block: bool,
                     timeout: Optional[float]) -> DispatchFuture:
        event = future.event
        items = self._items
        endtime = None if timeout is None else _monotonic() + timeout
        with self._lock:
            while True:
                if self._state is not _RUNNING:
                    error: errors.PluginServiceError = self._state_error()
                    break
                if len(items) < self._room:
                    items.append(future)
                    self._enqueued += 1
                    if self._worker_waiting:
                        self._worker_waiting = False
                        self._not_empty.notify()
                    return future
                remaining = None if endtime is None else endtime - _monotonic()
                if not block or (remaining is not None and remaining <= 0) \
                        or threading.current_thread() is self._worker:
                    # The worker is the only consumer: it must never wait on itself.
                    error = errors.QueueFull(self._capacity, service=self.name)
                    break
                self._producers_waiting += 1
                self._room_signalled = False
                try:
                    self._not_full.wait(remaining)
                finally:
                    self._producers_waiting -= 1
        raise self._reject(error, event)

    def _state_error(self) -> errors.PluginServiceError:
        state = self._state
        if state is _READY or state is _STARTING:
            kind: Type[errors._StateError] = errors.ServiceUnavailable
            text = "service %r is not running yet (%s)"
        elif state is _FAILED:
            kind = errors.ServiceFailed
            text = "service %r has failed (%s)"
        else:
            kind = errors.ServiceStopped
            text = "service %r is %s"
        return kind(text % (self.name, state.value), service=self.name, state=state)

    def _withdraw(self, future: DispatchFuture) -> bool:
        """``future.cancel()``: take a still-queued event back (counts as dropped)."""
        with self._lock:
            try:
                self._items.remove(future)
            except ValueError:
                return future.cancelled()
            self._dropped += 1
            future._mark_withdrawn()
            if self._producers_waiting:
                self._not_full.notify()
        return future._announce_withdrawn()

    # --------------------------------------------------------------- lifecycle
    def start(self, timeout: Optional[float] = None) -> ServiceStatus:
        """Start the service and return once it is RUNNING.

        Runs ``plugin.start()`` on the new worker thread. Raises ``ServiceFailed``
        (state FAILED) if it raised or did not return within the smaller of
        ``timeout`` and ``start_timeout``; ``LifecycleError`` from STOPPING,
        STOPPED or FAILED (use ``restart``); ``HostClosed`` once the host's
        ``close()`` has begun. A RUNNING service is left as it is.
        """
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        life = self._request_start(timeout)
        return self._await_start(life)

    def _request_start(self, timeout: Optional[float]) -> int:
        """Begin a start if READY and bound it from now; the life to wait for
        (0: already RUNNING)."""
        life = self._request_life()
        if life:
            self._schedule_start_bound(life, self._start_bound(timeout))
        return life

    def _start_bound(self, timeout: Optional[float]) -> Optional[float]:
        start_timeout = self._config.start_timeout
        if timeout is None:
            return start_timeout
        return timeout if start_timeout is None else min(timeout, start_timeout)

    def _closed_error(self, call: str) -> errors.HostClosed:
        return errors.HostClosed("host is closed; %s of service %r refused" % (call, self.name),
                                 service=self.name)

    def _request_life(self) -> int:
        with self._lock:
            if self._closing:
                raise self._closed_error("start()")
            state = self._state
            if state is _RUNNING:
                return 0
            if state is _READY:
                self._begin_life(auto=False)
            elif state is not _STARTING:
                raise errors.LifecycleError(
                    "cannot start service %r from %s%s" % (
                        self.name, state.value,
                        "; use restart()" if state in (_STOPPED, _FAILED) else ""),
                    service=self.name, state=state)
            return self._life

    def restart(self, timeout: Optional[float] = None) -> ServiceStatus:
        """Start a FAILED or STOPPED service again, with a fresh plugin instance when
        it was registered as a factory. Raises like :meth:`start` (``HostClosed``
        once the host's ``close()`` has begun). A shared instance still in its
        cleanup after a failure (``on_failure()`` or ``stop()``) is restarted once
        that returns, waiting at most ``stop_timeout``."""
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        waits = not self._on_runtime_thread()
        with self._lock:
            if waits and self._factory is None and self._phase is _IN_CLEANUP:
                bound = self._config.stop_timeout
                if timeout is not None:
                    bound = timeout if bound is None else min(bound, timeout)
                self._state_changed.wait_for(
                    lambda: self._phase is not _IN_CLEANUP or self._closing, bound)
            if self._closing:
                raise self._closed_error("restart()")
            state = self._state
            if state is not _FAILED and state is not _STOPPED:
                raise errors.LifecycleError(
                    "cannot restart service %r from %s" % (self.name, state.value),
                    service=self.name, state=state)
            if self._factory is None and self._worker_busy():
                raise errors.LifecycleError(
                    "service %r: the previous life is still inside %s; a shared plugin "
                    "instance is not restarted under it" % (self.name, self._phase),
                    service=self.name, state=state)
            self._cancel_restart_timer()
            self._restarts += 1
            self._begin_life(auto=False)
            life = self._life
        self._schedule_start_bound(life, self._start_bound(timeout))
        return self._await_start(life)

    def _worker_busy(self) -> bool:
        """Whether the current life's worker is inside plugin code (or owes it its
        cleanup): it may not be joined, nor a shared instance restarted under it."""
        worker = self._worker
        return worker is not None and worker.is_alive() and (
            self._phase is not _IDLE or self._life in self._clean_ups)

    def _cancel_restart_timer(self) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None
        self._restart_when_idle = False

    def _begin_life(self, auto: bool) -> None:
        """STARTING, and a new worker thread for a new life (lock held)."""
        self._transition(_STARTING, "restart" if self._life else "")
        self._life += 1
        self._auto_life = auto
        self._phase = _IN_START
        self._plugin = None
        self._current = None
        self._timed_out_current = False
        self._deadline = None
        self._fail_pending = None
        self._consecutive_failures = 0
        self._drain = True
        worker = threading.Thread(target=self._work, args=(self._life,), name=self.name,
                                  daemon=True)
        self._worker = worker
        worker.start()
        if auto:
            self._schedule_start_bound(self._life, self._config.start_timeout)

    def _schedule_start_bound(self, life: int, bound: Optional[float]) -> None:
        if bound is not None:
            self._runtime.watchdog.schedule(_monotonic() + bound, self._on_start_bound,
                                            life, bound)

    def _await_start(self, life: int) -> ServiceStatus:
        """Wait for the start of ``life``; its status once RUNNING."""
        self._wait_started(life)
        return self.status()

    def _on_runtime_thread(self) -> bool:
        """True on this service's worker or the host's watchdog: threads that must
        never block on a lifecycle change only they could complete."""
        current = threading.current_thread()
        return current is self._worker or current is self._runtime.watchdog.thread

    def _wait_started(self, life: int) -> None:
        """Wait for the start of ``life`` (bounded by its timer); raise unless it
        ended RUNNING."""
        if life == 0:
            return
        if self._on_runtime_thread():
            raise errors.LifecycleError(
                "service %r: a start cannot be awaited from its own callback or from a "
                "done-callback on the watchdog thread" % self.name,
                service=self.name, state=self._state)
        with self._lock:
            self._state_changed.wait_for(
                lambda: self._life != life or self._state is not _STARTING)
            state = self._state
            failure = self._failure
        if state is _RUNNING:
            return
        if state is _FAILED:
            raise errors.ServiceFailed(
                "service %r failed to start: %s" % (
                    self.name, failure.message if failure else "unknown reason"),
                service=self.name, state=state)
        raise errors.ServiceStopped("service %r was stopped while starting" % self.name,
                                    service=self.name, state=state)

    def _on_start_bound(self, life: int, bound: float) -> None:
        post: _Post = []
        with self._lock:
            if self._life == life and self._phase is _IN_START and (
                    self._state is _STARTING or self._state is _STOPPING):
                diagnostic = self._note(
                    _K.SERVICE_FAILED, "start() did not return within %.3gs" % bound)
                self._fail(diagnostic, post)
        _resolve(post)

    def _on_restart_due(self, life: int) -> None:
        with self._lock:
            if self._life != life or self._state is not _FAILED or self._closing:
                return
            self._restart_timer = None
            if self._factory is None and self._worker_busy():
                # A shared instance is never run by two threads: restart once the
                # stuck callback returns.
                self._restart_when_idle = True
                return
            self._restart_now()

    def _restart_now(self) -> None:
        self._restart_when_idle = False
        self._auto_restarts.append(_monotonic())
        self._restarts += 1
        self._log.info("restarting automatically")
        self._begin_life(auto=True)

    def stop(self, *, drain: bool = True, timeout: Optional[float] = None) -> ServiceStatus:
        """Stop the service: STOPPING at once (new events are refused), then STOPPED.

        With ``drain`` the queued events are still delivered; without it, or once the
        bound (``timeout``, else ``stop_timeout``) runs out, they are dropped
        (``ServiceStopped``). A handler still running at the bound is cancelled and
        given ``cancel_grace`` to return; then ``plugin.stop()`` runs on the worker.
        Raises ``ServiceFailed`` if the service ends FAILED, ``HostClosed`` once the
        host's ``close()`` has begun (it stops every service itself). A READY
        service stops without calling the plugin; STOPPED or FAILED ones are left
        as they are.
        """
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        if self._closing:  # close() stops every service itself, with its own bound
            raise self._closed_error("stop()")
        life = self._request_stop(drain, timeout)
        return self._await_stopped(life)

    def _request_stop(self, drain: bool, timeout: Optional[float]) -> int:
        """Begin a stop; the life to wait for (0: nothing to wait for)."""
        post: _Post = []
        with self._lock:
            state = self._state
            if state is _STOPPED or state is _FAILED:
                return 0
            if state is _READY:
                self._transition(_STOPPED)
                return 0
            if state is not _STOPPING:
                self._transition(_STOPPING)
                self._drain = drain
            elif not drain:
                self._drain = False
            if not self._drain:
                self._drop_queued(errors.ServiceStopped, post)
                self._recall_ahead(post)
            life = self._life
            bound = timeout if timeout is not None else self._config.stop_timeout
            if bound is not None:
                self._runtime.watchdog.schedule(_monotonic() + bound, self._on_stop_bound,
                                                life, bound)
        _resolve(post)
        return life

    def _await_stopped(self, life: int, deadline: Optional[float] = None) -> ServiceStatus:
        """Wait for the stop of ``life``; past ``deadline`` (the host closing) give up
        on it: the service fails and its stuck thread is abandoned."""
        if self._on_runtime_thread():
            # From this service's own callback, or a done-callback on the watchdog:
            # the stop completes later; waiting here would wait on ourselves (nor
            # does the watchdog wait for the plugin's status()).
            with self._lock:
                return self._snapshot()
        if life == 0:
            return self.status()
        with self._lock:
            stopped = self._state_changed.wait_for(
                lambda: self._life != life or self._state is _STOPPED or self._state is _FAILED,
                None if deadline is None else max(0.0, deadline - _monotonic()))
            post: _Post = []
            if not stopped and self._state is _STOPPING:
                self._give_up_stopping(post)
            snapshot = self._snapshot()
        _resolve(post)
        if snapshot.state is _FAILED:
            failure = snapshot.failure
            raise errors.ServiceFailed(
                "service %r failed while stopping: %s" % (
                    self.name, failure.message if failure else "unknown reason"),
                service=self.name, state=_FAILED)
        return snapshot

    def _give_up_stopping(self, post: _Post) -> None:
        """Close's deadline passed while STOPPING (lock held): fail it now."""
        if self._phase is _IN_DISPATCH and self._current is not None \
                and not self._timed_out_current:
            self._time_out_current(None, post, "still running when the host closed")
        self._fail(self._note(_K.SERVICE_FAILED, "host closed before the service stopped "
                              "(%s still running)" % (self._phase or "worker")), post,
                   on_return=self._phase is _IN_DISPATCH)

    def _on_stop_bound(self, life: int, bound: float) -> None:
        """The stop bound ran out: drop what is queued, cancel a running handler and
        grant it ``cancel_grace``. A ``start()`` or ``stop()`` still running has no
        context to cancel, so it fails the service at the bound."""
        post: _Post = []
        with self._lock:
            if self._life != life or self._state is not _STOPPING:
                return
            self._drain = False
            self._drop_queued(errors.ServiceStopped, post)
            self._recall_ahead(post)
            phase = self._phase
            in_handler = not (phase is _IN_STOP or phase is _IN_START)
            if not in_handler:
                self._fail(self._note(_K.SERVICE_FAILED, "%s did not return within the "
                                      "%.3gs stop bound" % (phase, bound)), post)
            grace = self._config.cancel_grace
            if grace is not None and self._state is _STOPPING:
                # Armed before the handler is cancelled: a cancel hook may arm its
                # own timer for the same grace (the Ray backend kills the actor
                # then), and the watchdog runs equal deadlines in the order they
                # were armed, so the timeout is decided before anything is killed.
                self._runtime.watchdog.schedule(_monotonic() + grace, self._on_stop_grace,
                                                life, bound, grace)
            if in_handler and self._current_ctx is not None:
                self._current_ctx._cancel()
            self._not_empty.notify_all()
        _resolve(post)

    def _on_stop_grace(self, life: int, bound: float, grace: float) -> None:
        post: _Post = []
        with self._lock:
            if self._life != life or self._state is not _STOPPING:
                return
            phase = self._phase
            if phase is _IN_DISPATCH and self._current is not None \
                    and not self._timed_out_current:
                self._time_out_current(bound, post, "cancelled by stop and did not return")
            diagnostic = self._note(
                _K.SERVICE_FAILED, "stop did not complete: %s still running %.3gs after "
                "the %.3gs stop bound" % (phase or "worker", grace, bound))
            self._fail(diagnostic, post, on_return=phase is _IN_DISPATCH)
        _resolve(post)

    def _close_begin(self) -> None:
        """Host closing: no automatic restart from now on; drop what waits for one."""
        post: _Post = []
        with self._lock:
            self._closing = True
            self._state_changed.notify_all()  # a restart() waiting on a cleanup gives up
            self._cancel_restart_timer()
            if self._state is _FAILED:
                self._drop_queued(errors.ServiceFailed, post)
        _resolve(post)

    # ------------------------------------------------------------ timeouts
    def _arm(self, deadline: float) -> None:
        """Make sure a dispatch timer fires by ``deadline`` (lock held).

        At most one dispatch timer is armed per service: when it fires early (its
        event finished) it re-arms for the current deadline, so the hot path pays
        no scheduling cost per event.
        """
        armed = self._timer_at
        if armed is None or armed > deadline:
            self._timer_at = deadline
            self._runtime.watchdog.schedule(deadline, self._on_dispatch_timer, deadline)

    def _on_dispatch_timer(self, armed: float) -> None:
        post: _Post = []
        with self._lock:
            if self._timer_at == armed:
                self._timer_at = None
            deadline = self._deadline
            if self._current is None or self._timed_out_current or deadline is None:
                return
            if deadline > _monotonic():
                self._arm(deadline)
                return
            timeout = self._config.dispatch_timeout
            self._time_out_current(timeout, post,
                                   "handler did not return within %.3gs" % (timeout or 0.0))
        _resolve(post)

    def _time_out_current(self, timeout: Optional[float], post: _Post, why: str) -> None:
        """Decide the in-flight event as timed out (lock held); cancel its handler."""
        future = self._current
        assert future is not None
        event = self._current_event
        self._timed_out_current = True
        if self._current_ctx is not None:
            self._current_ctx._cancel()
        self._timed_out += 1
        self._consecutive_failures += 1
        diagnostic = self._note(_K.DISPATCH_TIMEOUT, why, future._cid)
        self._dead_letter(event, diagnostic)
        fail_after = self._config.fail_after
        if fail_after is not None and self._consecutive_failures >= fail_after \
                and self._fail_pending is None:
            self._fail_pending = diagnostic  # FAILED once the handler returns
        grace = self._config.cancel_grace
        if grace is not None:
            self._runtime.watchdog.schedule(_monotonic() + grace, self._on_dispatch_grace,
                                            self._life, future, grace)
        post.append((future.set_exception, errors.DispatchTimeout(
            "service %r: %s" % (self.name, why), service=self.name, timeout=timeout)))

    def _on_dispatch_grace(self, life: int, future: DispatchFuture, grace: float) -> None:
        post: _Post = []
        with self._lock:
            if self._life != life or self._current is not future:
                return
            diagnostic = self._note(
                _K.SERVICE_FAILED, "handler ignored cancellation: still running %.3gs after "
                "its deadline" % grace, future._cid)
            self._fail(diagnostic, post, on_return=True)
        _resolve(post)

    # ------------------------------------------------------------ the worker
    def _work(self, life: int) -> None:
        """The worker thread of one life: start(), the dispatch loop, stop(); or,
        when its events failed the service, the plugin's cleanup."""
        plugin = None
        try:
            plugin = self._start_plugin(life)
            if plugin is not None:
                self._dispatch_loop(life, plugin)
                self._stop_plugin(life, plugin)
        except BaseException as exc:  # a bug of ours: fail loudly, never strand events
            self._worker_crashed(life, exc)
        if plugin is not None:
            self._clean_up_after_failure(life, plugin)
        self._worker_exit(life)

    def _owe_clean_up(self, failure: Diagnostic) -> None:
        """This life's worker owes the plugin its cleanup (lock held)."""
        self._clean_ups[self._life] = failure
        if self._factory is None:
            # A shared instance is busy until its cleanup returns: no restart may
            # start it again under it (restart() and _restart_when_idle wait).
            self._phase = _IN_CLEANUP

    def _clean_up_after_failure(self, life: int, plugin: Any) -> None:
        """The service went FAILED because of its events: release what ``start()``
        acquired, through ``plugin.on_failure(diagnostic)`` if it has one, else
        ``plugin.stop()``, here on the worker, bounded by ``stop_timeout`` (past it
        the thread is left inside the plugin). What it raises is recorded."""
        with self._lock:
            diagnostic = self._clean_ups.get(life)
            if diagnostic is None:  # a handler abandoned past its grace came back
                diagnostic = self._clean_ups_on_return.pop(life, None)
                if diagnostic is None:
                    return
                self._clean_ups[life] = diagnostic
            bound = self._config.stop_timeout
            if bound is not None:
                self._runtime.watchdog.schedule(_monotonic() + bound,
                                                self._on_clean_up_bound, life, bound)
        call = "stop()"
        try:
            hook = getattr(plugin, "on_failure", None)
            if hook is not None:
                call = "on_failure()"
                hook(diagnostic)
            else:
                plugin.stop()
            text = None
        except BaseException as exc:
            text = describe(exc)
        with self._lock:
            self._clean_ups.pop(life, None)
            if self._life == life and self._phase is _IN_CLEANUP:
                self._phase = _IDLE
            if text is not None:
                self._note(_K.SERVICE_FAILED, "%s after the failure raised %s" % (call, text))
            self._state_changed.notify_all()  # restart() and close() wait for it

    def _await_clean_up(self, deadline: Optional[float]) -> None:
        """Wait for a cleanup still owed or running (``close()``), bounded by
        ``deadline`` and the stop bound."""
        bound = self._config.stop_timeout
        if deadline is not None:
            left = max(0.0, deadline - _monotonic())
            bound = left if bound is None else min(bound, left)
        with self._lock:
            self._state_changed.wait_for(lambda: not self._clean_ups, bound)

    def _on_clean_up_bound(self, life: int, bound: float) -> None:
        with self._lock:
            if life in self._clean_ups:
                self._note(_K.SERVICE_FAILED, "the cleanup after the failure did not return "
                           "within the %.3gs stop bound; its thread is left behind" % bound)

    def _worker_crashed(self, life: int, exc: BaseException) -> None:
        self._log.critical("worker crashed: {}", failure_log(exc))
        text = describe(exc)
        post: _Post = []
        with self._lock:
            if self._life != life:
                return
            future = self._current
            if future is not None and not self._timed_out_current:
                self._failed += 1
                self._dead_letter(self._current_event, self._note(
                    _K.DISPATCH_FAILED, "worker crashed: %s" % text, future._cid))
                error = errors.DispatchFailed("service %r: worker crashed" % self.name,
                                              service=self.name)
                error.__cause__ = exc
                post.append((future.set_exception, error))
            self._current = None
            self._timed_out_current = False
            diagnostic = self._note(_K.SERVICE_FAILED, "worker crashed: %s" % text)
            if self._state is _STARTING or self._state is _RUNNING \
                    or self._state is _STOPPING:
                self._fail(diagnostic, post, clean_up=True)
        _resolve(post)

    def _start_plugin(self, life: int) -> Any:
        try:
            plugin = self._factory() if self._factory is not None else self._instance
            plugin.start()
            # Read after start(): a proxy for a remote plugin learns them there.
            ingresses = {ingress.name: ingress for ingress in getattr(plugin, "ingresses", ())}
        except BaseException as exc:
            text = describe(exc)
            post: _Post = []
            with self._lock:
                if self._life == life and self._phase is _IN_START:
                    diagnostic = self._note(_K.SERVICE_FAILED, "start() raised %s" % text)
                    if self._state is _STARTING or self._state is _STOPPING:
                        self._fail(diagnostic, post)
                    self._phase = _IDLE
            _resolve(post)
            return None
        with self._lock:
            if self._life == life and self._phase is _IN_START:
                if self._state is _STARTING:
                    self._phase = _IDLE
                    self._plugin = plugin
                    self._ingresses = ingresses
                    self._failure = None
                    self._transition(_RUNNING)
                    return plugin
                if self._state is _STOPPING:  # stopped while starting
                    self._phase = _IDLE
                    self._plugin = plugin
                    return plugin
                # Busy until this stop() returns (_worker_exit makes it idle), so a
                # shared instance is not restarted under it.
                self._phase = _IN_STOP
        # The start bound ran out first: release what the late start() acquired.
        self._call_stop_quietly(plugin)
        return None

    def _call_stop_quietly(self, plugin: Any) -> None:
        try:
            plugin.stop()
        except BaseException as exc:
            self._log.warning("stop() after a late start() raised {}", describe(exc))

    def _dispatch_loop(self, life: int, plugin: Any) -> None:
        if getattr(plugin, "_pipeline", 0):
            self._pipeline_loop(life, plugin)
            return
        handle = plugin.handle_ingress
        lock = self._lock
        items = self._items
        timeout = self._config.dispatch_timeout
        retry = self._config.retry
        future: Optional[DispatchFuture] = None
        ctx = DispatchContext(None)
        ok = True
        value: Any = None
        while True:
            # Settle the finished event and take the next one under one lock hold.
            settled: Optional[_Post] = None
            with lock:
                if self._life != life:
                    return  # abandoned after a stuck handler; its event was decided
                if future is not None:
                    settled = self._settle(future, ok, value)
                    future = None
                state = self._state
                if items and (state is _RUNNING or (state is _STOPPING and self._drain)):
                    future, ctx = self._take(items, timeout)
            if settled:
                _resolve(settled)
            if future is None:
                taken = self._wait_for_event(life, timeout)
                if taken is None:
                    return
                future, ctx = taken
            if self._timed_out_current:
                # Decided (stop grace) while the previous callbacks ran on this
                # thread; a merely cancelled one is still handed over, ctx says so.
                ok, value = True, None
                continue
            if timeout is not None:
                self._start_deadline(future, ctx, timeout)
            event = future.event
            try:
                value = handle(event, ctx)
                ok = True
            except BaseException as exc:
                value = exc
                ok = False
                if retry is not None and _is_instance(exc, retry.retry_on) \
                        and not ctx.cancelled:
                    ok, value = self._retry(life, exc, handle, timeout)
                if not ok:
                    value = _Failure(value)  # plugin code: before the lock

    def _pipeline_loop(self, life: int, plugin: Any) -> None:
        """The dispatch loop for a plugin in another process (the Ray backend).

        Up to ``plugin._pipeline`` events are handed to the plugin's process at
        once, so one round trip overlaps the next; that process runs them one at a
        time, in order. The oldest one sent is the event in flight: its deadline
        starts when the one before it returned. Whenever an event does not end
        clean (it raised, was cancelled or ran late) or is recalled (the service
        failed or stops without drain), the remote side skips everything sent after
        it; those come back unrun and go to the front of the queue, so the host
        knows that outcome (and decides a retry, ``fail_after``...) before anything
        later runs, as with one event at a time.

        The plugin's side of it: ``_send(future, ctx, timeout)``, ``_receive()``
        (the oldest reply: ``(ran, value, clean)`` or the handler's exception),
        ``_may_send()`` (False while replies of a closed batch are outstanding)
        and ``_recall()`` (skip what was sent: a stop without drain).
        """
        lock = self._lock
        items = self._items
        timeout = self._config.dispatch_timeout
        retry = self._config.retry
        window = max(1, int(plugin._pipeline))
        sent: "collections.deque[Tuple[DispatchFuture, DispatchContext]]" = \
            collections.deque()
        skipped: List[DispatchFuture] = []  # came back unrun, in order
        draining = False  # recalled: ``sent`` comes back unrun (or, raced, with outcomes)
        while True:
            sends: List[Tuple[DispatchFuture, DispatchContext]] = []
            post: Optional[_Post] = None
            with lock:
                if self._life != life:
                    break  # abandoned after a stuck handler; what was sent is taken back
                dispatching = self._dispatching()
                if not sent:
                    if not (items and dispatching):
                        if self._state is not _RUNNING:
                            return
                        self._worker_waiting = True
                        self._not_empty.wait()
                        self._worker_waiting = False
                        continue
                    future, ctx = self._take(items, timeout)
                    sent.append((future, ctx))
                    sends.append((future, ctx))
                if dispatching and not draining and plugin._may_send():
                    while items and len(sent) < window:
                        ahead = items.popleft()
                        ahead._mark_running()
                        self._ahead += 1
                        self._room -= 1
                        entry = (ahead, DispatchContext(ahead.event, None))
                        sent.append(entry)
                        sends.append(entry)
            if sends:
                head, head_ctx = sent[0]
                if timeout is not None and sends[0][0] is head:
                    self._start_deadline(head, head_ctx, timeout)
                count = 0
                for future, ctx in sends:
                    if count and not self._dispatching():  # stopped or failed meanwhile
                        break
                    plugin._send(future, ctx, timeout)
                    count += 1
                unsent = [future for future, _ctx in sends[count:]]
                for _future in unsent:
                    sent.pop()  # the newest entries of ``sent``
                with lock:  # what was taken meanwhile found nothing to recall
                    post = self._requeue(unsent)
                    recall = not self._dispatching()
                _resolve(post)
                post = None
                if recall:
                    plugin._recall()
            head, head_ctx = sent[0]
            ok = True
            try:
                ran, value, _clean = plugin._receive()
            except BaseException as exc:
                ran, value, ok = True, exc, False
                if not draining and retry is not None and _is_instance(exc, retry.retry_on) \
                        and not head_ctx.cancelled and not issubclass(
                            type(exc), (errors.PluginCrashed, _Undeliverable)):
                    ok, value = self._retry(life, exc, plugin.handle_ingress, timeout)
                if not ok:
                    value = _Failure(value)  # plugin code: before the lock
            sent.popleft()
            if draining and not ok and (value.crashed or not value.counts):
                ran = False  # recalled, then its process died (or never sent): unrun
            with lock:
                if self._life != life:
                    if draining and ran:
                        post = self._settle_detached(head, ok, value)
                    elif draining:
                        skipped.append(head)
                    # else: the one in flight, decided when its life was abandoned
                    draining = True  # the rest of ``sent`` was never in flight
                    break
                if draining:
                    if ran:  # it began before the recall reached it: its outcome
                        self._promote(head, head_ctx)
                        post = self._settle(head, ok, value)
                    else:
                        skipped.append(head)
                elif not ran and not self._timed_out_current:
                    # Skipped before it began (a cancel or recall got there first).
                    self._unpromote(head)
                    skipped.append(head)
                else:
                    post = self._settle(head, ok, value if ran else None)
                if not sent:
                    draining = False
                    if skipped:
                        post = (post or []) + self._requeue(skipped)
                        skipped = []
                elif not draining:
                    if self._dispatching():
                        self._promote(*sent[0])
                    else:  # recalled: they come back unrun, or with what they did
                        draining = True
            if post:
                _resolve(post)
        # Abandoned: what was sent after the one in flight comes back unrun (its
        # batch was closed by the cancel that abandoned it, or its process killed).
        post = list(post or ())
        if sent and not draining:  # the one in flight, decided when abandoned
            sent.popleft()
            try:
                plugin._receive()
            except BaseException:
                pass
        while sent:
            future, _ctx = sent.popleft()
            try:
                ran, value, _clean = plugin._receive()
                ok = True
            except BaseException as exc:
                ran, value, ok = False, exc, False
            if ran:
                with lock:
                    post += self._settle_detached(future, ok, value)
            else:
                skipped.append(future)
        with lock:
            post += self._requeue(skipped)
        _resolve(post)

    def _dispatching(self) -> bool:
        """Whether the worker still hands queued events over: RUNNING, or STOPPING
        with drain."""
        state = self._state
        return state is _RUNNING or (state is _STOPPING and self._drain)

    def _promote(self, future: DispatchFuture, ctx: DispatchContext) -> None:
        """An event sent ahead becomes the one in flight (lock held)."""
        self._ahead -= 1
        self._room += 1
        self._dispatched += 1
        self._current = future
        self._current_event = future.event
        self._current_ctx = ctx
        self._timed_out_current = False
        self._phase = _IN_DISPATCH
        self._deadline = None
        if self._producers_waiting and not self._room_signalled:
            self._room_signalled = True
            self._not_full.notify_all()
        timeout = self._config.dispatch_timeout
        if timeout is not None:
            deadline = ctx.deadline = self._deadline = _monotonic() + timeout
            self._arm(deadline)

    def _unpromote(self, future: DispatchFuture) -> None:
        """The event in flight came back unrun: it waits again (lock held)."""
        self._dispatched -= 1
        self._ahead += 1
        self._room -= 1
        self._current = None
        self._current_ctx = None
        self._deadline = None
        self._phase = _IDLE

    def _recall_ahead(self, post: _Post) -> None:
        """Nothing sent ahead may run any more (a failure, a stop without drain):
        ask the remote plugin to skip it (lock held; the call runs after it)."""
        plugin = self._plugin
        if self._ahead and plugin is not None:
            recall = getattr(plugin, "_recall", None)
            if recall is not None:
                post.append((recall, None))

    def _requeue(self, futures: List[DispatchFuture]) -> _Post:
        """Events sent ahead came back unrun: to the front of the queue, pending
        again, unless the state says they are dropped (lock held)."""
        post: _Post = []
        if not futures:
            return post
        items = self._items
        for future in reversed(futures):
            future._mark_pending()
            items.appendleft(future)
        self._ahead -= len(futures)
        self._room += len(futures)
        if self._producers_waiting:
            self._not_full.notify_all()
        state = self._state
        if state is _FAILED:
            if self._restart_timer is None and not self._restart_when_idle:
                self._drop_queued(errors.ServiceFailed, post)
        elif state is _STOPPED or (state is _STOPPING and not self._drain):
            self._drop_queued(errors.ServiceStopped, post)
        elif self._worker_waiting:  # a newer life's worker
            self._worker_waiting = False
            self._not_empty.notify()
        return post

    def _settle_detached(self, future: DispatchFuture, ok: bool, value: Any) -> _Post:
        """The outcome of an event that ran although it was never the one in flight
        (it began just before its batch was closed, lock held)."""
        self._ahead -= 1
        self._room += 1
        self._dispatched += 1
        if self._producers_waiting:
            self._not_full.notify_all()
        if ok:
            self._succeeded += 1
            return [(future.set_result, value)]
        self._failed += 1
        return self._dispatch_failed(future, future.event, value)[1]

    def _dispatch_failed(self, future: DispatchFuture, event: Any, failure: _Failure
                         ) -> Tuple[Diagnostic, _Post]:
        """Record a failed event (lock held): diagnostic, dead letter (``event``, the
        last attempt), and the ``DispatchFailed`` its future gets once the lock is
        released."""
        why, cause = failure.why, failure.cause
        diagnostic = self._note(_K.DISPATCH_FAILED, why, future._cid)
        self._dead_letter(event, diagnostic)
        error = errors.DispatchFailed("service %r: %s" % (self.name, why),
                                      service=self.name)
        error.__cause__ = cause
        return diagnostic, [(future.set_exception, error)]

    def _take(self, items: "collections.deque[DispatchFuture]",
              timeout: Optional[float]) -> Tuple[DispatchFuture, DispatchContext]:
        """Pop the next event and make it the one in flight (lock held)."""
        future = items.popleft()
        self._dispatched += 1
        self._current = future
        self._current_event = future.event
        self._timed_out_current = False
        self._phase = _IN_DISPATCH
        self._deadline = None  # set by _start_deadline as the handler is invoked
        ctx = self._current_ctx = DispatchContext(future.event, None)
        # Only our lock takes a queued future out, so it is still PENDING here.
        future._mark_running()
        if self._producers_waiting and not self._room_signalled:
            # Wake every parked producer once per parking episode, not on every
            # take: until they run, more notify() calls would only cost us.
            self._room_signalled = True
            self._not_full.notify_all()
        return future, ctx

    def _start_deadline(self, future: DispatchFuture, ctx: DispatchContext,
                        timeout: float) -> None:
        """Start the dispatch deadline as the handler is invoked.

        It is set after the previous event's done-callbacks ran, so a slow callback
        can never time out an event whose handler has not started. Writing the
        deadline before reading ``_timer_at`` pairs with the watchdog, which clears
        ``_timer_at`` before reading the deadline: one of the two always arms.
        """
        deadline = ctx.deadline = _monotonic() + timeout
        self._deadline = deadline
        if self._timer_at is None:
            with self._lock:
                if self._current is future and self._deadline == deadline:
                    self._arm(deadline)

    def _wait_for_event(self, life: int, timeout: Optional[float]
                        ) -> Optional[Tuple[DispatchFuture, DispatchContext]]:
        items = self._items
        with self._lock:
            while self._life == life:
                state = self._state
                if items and (state is _RUNNING or (state is _STOPPING and self._drain)):
                    return self._take(items, timeout)
                if state is not _RUNNING:
                    return None
                self._worker_waiting = True
                self._not_empty.wait()
                self._worker_waiting = False
        return None

    def _settle(self, future: DispatchFuture, ok: bool, value: Any) -> Optional[_Post]:
        """Record the outcome of the event in flight (lock held).

        Returns what resolves futures once the lock is released, or None when the
        watchdog already decided this event (timed out) and nothing else changed.
        """
        self._current = None
        self._current_ctx = None
        self._deadline = None
        self._phase = _IDLE
        if self._timed_out_current:
            self._timed_out_current = False
            owed = self._clean_ups_on_return.pop(self._life, None)
            if owed is not None:  # abandoned past its grace, and back after all
                self._owe_clean_up(owed)
            pending = self._fail_pending
            if not ok and value.crashed:
                # Its process is gone (killed past the grace): it cannot serve more,
                # and like an expired grace on a thread, that is SERVICE_FAILED.
                pending = self._note(_K.SERVICE_FAILED, describe(value.cause))
            if pending is not None:
                post: _Post = []
                self._fail(pending, post, clean_up=ok or not value.crashed)
                return post
            return None
        if ok:
            self._succeeded += 1
            self._consecutive_failures = 0
            return [(future.set_result, value)]
        self._failed += 1
        if value.counts:
            self._consecutive_failures += 1
        diagnostic, post = self._dispatch_failed(future, self._current_event, value)
        fail_after = self._config.fail_after
        if (fail_after is not None and self._consecutive_failures >= fail_after) \
                or value.crashed:
            # A crashed plugin process cannot serve more, nor clean up.
            self._fail(diagnostic, post, clean_up=not value.crashed)
        return post

    def _retry(self, life: int, first: BaseException, handle: Callable[..., Any],
               timeout: Optional[float]) -> Tuple[bool, Any]:
        """Redeliver a failed event inline through tenacity; returns (ok, value).

        Each redelivery is a copy with ``attempt`` incremented and its own deadline.
        A timed-out attempt is not retried; a stop during the backoff ends the retry
        and the event fails with its last exception.
        """
        policy = self._config.retry
        assert policy is not None
        last = [first]
        first_pending = [True]

        def attempt() -> Any:
            if first_pending[0]:
                first_pending[0] = False
                raise first  # the first delivery, already made
            with self._lock:
                self._check_attempt(life)
                previous = self._current_event
            # The copy is made off the lock: an event subclass's __init__ is plugin code.
            event = attrs.evolve(previous, attempt=previous.attempt + 1)
            with self._lock:
                self._check_attempt(life)
                self._current_event = event
                self._retried += 1
                deadline = None
                if timeout is not None:
                    deadline = self._deadline = _monotonic() + timeout
                    self._arm(deadline)
                ctx = self._current_ctx = DispatchContext(event, deadline)
            try:
                result = handle(event, ctx)
            except _RetryCutShort:
                raise  # a remote attempt skipped by a stop: the last exception stands
            except BaseException as exc:
                if self._timed_out_current:
                    raise _AttemptTimedOut() from exc
                last[0] = exc
                raise
            if self._timed_out_current:
                raise _AttemptTimedOut()
            return result

        def backoff(seconds: float) -> None:
            with self._lock:
                if self._timed_out_current:
                    raise _AttemptTimedOut()
                self._deadline = None
                self._current_ctx = None
                if self._state_changed.wait_for(
                        lambda: self._life != life or self._state is not _RUNNING, seconds):
                    raise _RetryCutShort()

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(policy.max_attempts),
            wait=tenacity.wait_exponential(multiplier=policy.backoff, max=policy.max_backoff),
            retry=tenacity.retry_if_exception(
                lambda exc: _is_instance(exc, policy.retry_on)
                and not issubclass(type(exc), (_AttemptTimedOut, _RetryCutShort))),
            sleep=backoff,
            reraise=True,
        )
        try:
            return True, retrying(attempt)
        except (_RetryCutShort, _AttemptTimedOut):
            # Cut short by stop, or decided by the watchdog (then _settle ignores it).
            return False, last[0]
        except BaseException as exc:
            return False, exc

    def _check_attempt(self, life: int) -> None:
        """Raise unless a retry may deliver its next attempt now (lock held)."""
        if self._timed_out_current:
            raise _AttemptTimedOut()  # decided between raise and retry
        if self._life != life or self._state is not _RUNNING:
            raise _RetryCutShort()

    def _stop_plugin(self, life: int, plugin: Any) -> None:
        """After the loop: call ``plugin.stop()`` if the service is stopping."""
        post: _Post = []
        with self._lock:
            if self._life != life or self._state is not _STOPPING:
                return
            self._drop_queued(errors.ServiceStopped, post)
            self._phase = _IN_STOP
        _resolve(post)
        try:
            plugin.stop()
            error: Optional[BaseException] = None
        except BaseException as exc:
            error = exc
        text = None if error is None else describe(error)
        with self._lock:
            if self._life != life or self._state is not _STOPPING:
                return
            self._phase = _IDLE
            if text is None:
                self._transition(_STOPPED)
            else:
                diagnostic = self._note(_K.SERVICE_FAILED, "stop() raised %s" % text)
                self._fail(diagnostic, post)
        _resolve(post)

    def _worker_exit(self, life: int) -> None:
        with self._lock:
            if self._life == life:
                self._phase = _IDLE
                if self._restart_when_idle and self._state is _FAILED and not self._closing:
                    self._restart_now()
