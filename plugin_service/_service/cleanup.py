"""The plugin's cleanup after its events failed the service: ``on_failure()``
(else ``stop()``) on the worker, bounded by ``stop_timeout``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from .._diagnostics import Diagnostic
from .._guarded import describe
from .._logs import log_traceback
from .core import _IDLE, _IN_CLEANUP, _K, _monotonic
from .stopping import Stopping

if TYPE_CHECKING:  # pragma: no cover
    pass


class CleanUp(Stopping):
    """Owing, running and awaiting the cleanup."""

    __slots__ = ()

    def _owe_clean_up(self, failure: Diagnostic) -> None:
        """This life's worker owes the plugin its cleanup (lock held)."""
        self._clean_ups[self._life] = failure
        if self._session.shared:
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
            log_traceback(self._log, "%s after the failure raised %s" % (call, text), exc)
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
