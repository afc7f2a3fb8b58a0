"""The plugin's own ``status()``, asked on a thread of its own and bounded.

``status()`` never waits for the handler, nor long for the plugin: its
``status()`` runs on a daemon thread, waited for at most ``PLUGIN_STATUS_BOUND``;
concurrent askers share one call, and while one is stuck the next ones are told
None at once.
"""
from __future__ import annotations

import inspect
import threading
from typing import TYPE_CHECKING, Any, Optional, Tuple

import attrs

from .._diagnostics import DispatchCounters, ServiceStatus, jsonable
from .._plugin import ServicePlugin
from .._redact import sanitize
from .core import _monotonic

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




def begin_status(handle: "ServiceHandle") -> Tuple[ServiceStatus, Optional[StatusCall]]:
    """The locked snapshot, and the call of the plugin's ``status()`` that will
    answer for it: a new one, or the one already running for another asker."""
    try:
        with handle._lock:
            snapshot = handle._snapshot()
            plugin = handle._plugin
    except BaseException as exc:  # pragma: no cover - defensive: status never raises
        return ServiceStatus(handle.name, handle._state, 0, handle._capacity, 0, False,
                             None, None, DispatchCounters(), (),
                             {"status_error": sanitize(exc)}, handle._restarts), None
    if plugin is None or not _has_own_status(plugin):
        return snapshot, None
    with handle._lock:
        running = handle._status_call
        if running is not None:  # share it while it is young; a stuck one says None
            return snapshot, None if running.stuck() else running
        call = handle._status_call = StatusCall(plugin, handle)
    call.start()
    return snapshot, call


def finish_status(snapshot: ServiceStatus, call: Optional[StatusCall],
                  deadline: Optional[float] = None) -> ServiceStatus:
    """``snapshot`` with the plugin's status, once ``call`` answered (by ``deadline``)."""
    if call is None:
        return snapshot
    plugin_status = call.wait(deadline)
    if plugin_status is None:
        return snapshot
    return attrs.evolve(snapshot, plugin_status=plugin_status)
