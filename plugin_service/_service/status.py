"""What ``status()`` asks for after the locked snapshot: the plugin's own
``status()`` and, for a handler that is overdue or has run ``stack_after``
seconds, its stack; both bounded.

``status()`` never waits for the handler, nor long for the plugin: its
``status()`` runs on a daemon thread, waited for at most ``PLUGIN_STATUS_BOUND``;
concurrent askers share one call, and while one is stuck the next ones are told
None at once. The handler's stack is read from its thread (``_stacks``) only
then: nothing is recorded per event for it.
"""
from __future__ import annotations

import inspect
import threading
from typing import TYPE_CHECKING, Any, Optional, Tuple

import attrs

from .._diagnostics import DispatchCounters, ServiceStatus, jsonable
from .._plugin import ServicePlugin
from .._redact import sanitize
from .._stacks import Ready, StackAnswer, stack_of
from .core import _IN_DISPATCH, _monotonic

if TYPE_CHECKING:  # pragma: no cover
    from .handle import ServiceHandle

#: How long ``status()`` waits for a plugin's own ``status()`` (as on Ray).
PLUGIN_STATUS_BOUND = 1.0
_DEFAULT_STATUS = inspect.getattr_static(ServicePlugin, "status")


class StatusCall:
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


class Pending:
    """What a snapshot waits for once the lock is released: the plugin's
    ``status()`` call, and the handler's stack (with how long it has run)."""

    __slots__ = ("call", "stack", "running_for")

    def __init__(self, call: Optional[StatusCall], stack: Optional[StackAnswer],
                 running_for: Optional[float]) -> None:
        self.call = call
        self.stack = stack
        self.running_for = running_for


def _handler_began(handle: "ServiceHandle") -> Optional[float]:
    """When the handler in flight began (lock held): its dispatch deadline less the
    timeout, else the worker's stamp (``_stamped``); None if not known."""
    timeout = handle._config.dispatch_timeout
    if timeout is not None:
        deadline = handle._deadline
        return None if deadline is None else deadline - timeout
    if handle._stamped and handle._phase is _IN_DISPATCH:
        return handle._started
    return None


def _stack_due(handle: "ServiceHandle") -> Tuple[bool, Optional[float]]:
    """Whether the snapshot shows the handler's stack (lock held): an overdue one
    always, else once it has run ``stack_after`` seconds; and how long it ran."""
    if handle._current is None:
        return False, None
    began = _handler_began(handle)
    running = None if began is None else max(0.0, _monotonic() - began)
    if handle._timed_out_current:
        return True, running
    after = handle._config.stack_after
    return after is not None and running is not None and running >= after, running


def _ask_stack(dispatcher: Any, worker: Any) -> StackAnswer:
    """The dispatcher's answer for where its handler is (after the lock)."""
    if dispatcher is None:
        return Ready(stack_of(worker))
    try:
        answer: StackAnswer = dispatcher.handler_stack(worker)
        return answer
    except Exception as exc:  # pragma: no cover - defensive: status never raises
        return Ready(attrs.evolve(stack_of(None), unavailable=sanitize(exc, 200)))


def begin_status(handle: "ServiceHandle") -> Tuple[ServiceStatus, Optional[Pending]]:
    """The locked snapshot, and what will complete it: the call of the plugin's
    ``status()`` (a new one, or the one already running for another asker) and
    the handler's stack when it is due."""
    try:
        with handle._lock:
            snapshot = handle._snapshot()
            plugin = handle._plugin
            due, running = _stack_due(handle)
            worker, dispatcher = handle._worker, handle._dispatcher
    except BaseException as exc:  # pragma: no cover - defensive: status never raises
        return ServiceStatus(handle.name, handle._state, 0, handle._capacity, 0, False,
                             None, None, DispatchCounters(), (),
                             {"status_error": sanitize(exc)}, handle._restarts), None
    stack = _ask_stack(dispatcher, worker) if due else None
    call = _plugin_status_call(handle, plugin)
    if call is None and stack is None:
        return snapshot, None
    return snapshot, Pending(call, stack, running)


def _plugin_status_call(handle: "ServiceHandle", plugin: Any) -> Optional[StatusCall]:
    """The call of ``plugin``'s own ``status()`` to wait for, if it has one."""
    if plugin is None or not _has_own_status(plugin):
        return None
    with handle._lock:
        running = handle._status_call
        if running is not None:  # share it while it is young; a stuck one says None
            return None if running.stuck() else running
        call = handle._status_call = StatusCall(plugin, handle)
    call.start()
    return call


def finish_status(snapshot: ServiceStatus, pending: Optional[Pending],
                  deadline: Optional[float] = None) -> ServiceStatus:
    """``snapshot`` with the plugin's status and the handler's stack, once they
    answered (by ``deadline``; default: ``PLUGIN_STATUS_BOUND`` from now, for both)."""
    if pending is None:
        return snapshot
    if deadline is None:
        deadline = _monotonic() + PLUGIN_STATUS_BOUND
    if pending.stack is not None:
        stack = pending.stack.wait(deadline)
        snapshot = attrs.evolve(snapshot, handler_stack=attrs.evolve(
            stack, running_for=pending.running_for))
    if pending.call is None:
        return snapshot
    plugin_status = pending.call.wait(deadline)
    if plugin_status is None:
        return snapshot
    return attrs.evolve(snapshot, plugin_status=plugin_status)
