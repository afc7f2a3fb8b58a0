"""Stopping a service: the request, its bound and grace, waiting for it, and
the host's close.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .. import errors
from .._diagnostics import ServiceStatus
from .control import Control
from .core import (
    _FAILED,
    _IN_DISPATCH,
    _IN_START,
    _IN_STOP,
    _K,
    _READY,
    _STOPPED,
    _STOPPING,
    Deferred,
    _monotonic,
)

if TYPE_CHECKING:  # pragma: no cover
    pass


class Stopping(Control):
    """Stops and their bounds (lock held unless said otherwise)."""

    __slots__ = ()

    def _request_stop(self, drain: bool, timeout: Optional[float]) -> int:
        """Begin a stop; the life to wait for (0: nothing to wait for)."""
        later = Deferred()
        with self._lock:
            life = self._begin_stop(drain, timeout, later)
        later.run()
        return life

    def _begin_stop(self, drain: bool, timeout: Optional[float], later: Deferred) -> int:
        """``_request_stop`` under the lock."""
        state = self._state
        if state is _FAILED and self._kept:  # kept for a replacement: no more
            self._kept = False
            self._drop_queued(errors.ServiceFailed, later)
        if state is _STOPPED or state is _FAILED:
            return 0
        if state is _READY:
            self._transition(_STOPPED)
            return 0
        replacement = self._replacing
        if replacement is not None and not replacement.committed:
            # The stop wins: the old plugin drains and stops as usual.
            self._replacing = None
            replacement.outcome = errors.ServiceStopped(
                "service %r was stopped before its plugin was replaced" % self.name,
                service=self.name, state=_STOPPING)
        if state is not _STOPPING:
            self._transition(_STOPPING)
            self._drain = drain
        elif not drain:
            self._drain = False
        if not self._drain:
            self._drop_queued(errors.ServiceStopped, later)
            self._recall_ahead(later)
        life = self._life
        bound = timeout if timeout is not None else self._config.stop_timeout
        if bound is not None:
            self._runtime.watchdog.schedule(_monotonic() + bound, self._on_stop_bound,
                                            life, bound)
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
            later = self._wait_stopped(life, deadline)
            snapshot = self._snapshot()
        later.run()
        if snapshot.state is _FAILED:
            failure = snapshot.failure
            raise errors.ServiceFailed(
                "service %r failed while stopping: %s" % (
                    self.name, failure.message if failure else "unknown reason"),
                service=self.name, state=_FAILED)
        return snapshot

    def _wait_stopped(self, life: int, deadline: Optional[float]) -> Deferred:
        """Wait (lock held) until ``life`` stopped; past ``deadline`` give up on it.
        Returns what must run once the lock is released."""
        stopped = self._state_changed.wait_for(
            lambda: self._life != life or self._state is _STOPPED or self._state is _FAILED,
            None if deadline is None else max(0.0, deadline - _monotonic()))
        later = Deferred()
        if not stopped and self._state is _STOPPING:
            self._give_up_stopping(later)
        return later

    def _await_closed(self, life: int, deadline: Optional[float]) -> None:
        """The host's close: wait for the stop of ``life`` like ``_await_stopped``,
        with no snapshot to build nor error to raise (its diagnostics say it)."""
        if self._on_runtime_thread():
            return  # from its own callback: it would wait on itself
        with self._lock:
            later = self._wait_stopped(life, deadline)
        later.run()

    def _give_up_stopping(self, later: Deferred) -> None:
        """Close's deadline passed while STOPPING (lock held): fail it now."""
        if self._phase is _IN_DISPATCH and self._current is not None \
                and not self._timed_out_current:
            self._time_out_current(None, later, "still running when the host closed")
        self._fail(self._note(_K.SERVICE_FAILED, "host closed before the service stopped "
                              "(%s still running)" % (self._phase or "worker")), later,
                   on_return=self._phase is _IN_DISPATCH)

    def _on_stop_bound(self, life: int, bound: float) -> None:
        """The stop bound ran out: drop what is queued, cancel a running handler and
        grant it ``cancel_grace``. A ``start()`` or ``stop()`` still running has no
        context to cancel, so it fails the service at the bound."""
        later = Deferred()
        with self._lock:
            if self._life != life or self._state is not _STOPPING:
                return
            self._drain = False
            self._drop_queued(errors.ServiceStopped, later)
            self._recall_ahead(later)
            phase = self._phase
            in_handler = not (phase is _IN_STOP or phase is _IN_START)
            if not in_handler:
                self._fail(self._note(_K.SERVICE_FAILED, "%s did not return within the "
                                      "%.3gs stop bound" % (phase, bound)), later)
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
        later.run()

    def _on_stop_grace(self, life: int, bound: float, grace: float) -> None:
        later = Deferred()
        with self._lock:
            if self._life != life or self._state is not _STOPPING:
                return
            phase = self._phase
            if phase is _IN_DISPATCH and self._current is not None \
                    and not self._timed_out_current:
                self._time_out_current(bound, later, "cancelled by stop and did not return")
            diagnostic = self._note(
                _K.SERVICE_FAILED, "stop did not complete: %s still running %.3gs after "
                "the %.3gs stop bound" % (phase or "worker", grace, bound))
            self._fail(diagnostic, later, on_return=phase is _IN_DISPATCH)
        later.run()

    def _close_begin(self) -> None:
        """Host closing: no automatic restart from now on; drop what waits for one."""
        later = Deferred()
        with self._lock:
            self._closing = True
            self._state_changed.notify_all()  # a restart() waiting on a cleanup gives up
            self._cancel_restart_timer()
            if self._state is _FAILED:
                self._drop_queued(errors.ServiceFailed, later)
        later.run()
