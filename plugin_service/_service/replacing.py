"""Replacing a service's plugin while the service keeps taking events.

A replacement of a RUNNING service changes no state: submits go on into the
same queue. The worker finishes the event in flight on the old plugin (events
handed to a plugin ahead of their turn are recalled and queued again, in
order), leaves its loop, and commits: the new session is the service's, the
old plugin's ``stop()`` runs, and a fresh worker thread serves the same life
with the new plugin's ``start()``, then the queue. The life stays the same so
that a stop, its bound and its waiters span the hand-over; the old thread
touches nothing once the fresh one runs.

A failure while a replacement is under way (the new ``start()`` raising, or the
old plugin not letting go within the bound) fails the service with the new
plugin installed and the queue kept (``control._replacement_failed``).
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional, Union

from .. import errors
from .._checks import non_negative
from .._diagnostics import ServiceStatus
from .._guarded import describe
from .._logs import log_traceback
from .cleanup import CleanUp
from .core import (
    _FAILED,
    _IN_DISPATCH,
    _IN_START,
    _IN_STOP,
    _K,
    _READY,
    _RUNNING,
    _STOPPED,
    Deferred,
    _monotonic,
)

if TYPE_CHECKING:  # pragma: no cover
    from .dispatch import PluginSession


class Replacement:
    """One ``replace_service`` call: the new session, whether the worker
    committed to it (the new session is installed), and its outcome: None while
    under way, True once the new plugin started, else the error its caller gets."""

    __slots__ = ("session", "start_bound", "committed", "outcome")

    def __init__(self, session: "PluginSession", start_bound: Optional[float]) -> None:
        self.session = session
        self.start_bound = start_bound  # the new plugin's start(), in seconds
        self.committed = False
        self.outcome: Union[None, bool, errors.PluginServiceError] = None


class Replacing(CleanUp):
    """The request, its bound, and the worker's hand-over."""

    __slots__ = ()

    def _replace(self, session: "PluginSession", timeout: Optional[float]) -> ServiceStatus:
        """Replace the plugin (see ``PluginHost.replace_service``); the status
        once the new plugin's ``start()`` returned."""
        if self._on_runtime_thread():
            raise errors.LifecycleError(
                "service %r: a replacement cannot be awaited from its own callback or "
                "from a done-callback on the watchdog thread" % self.name,
                service=self.name, state=self._state)
        # Checked before anything is asked of the worker (a bad bound replaces nothing).
        non_negative("timeout", timeout, number=True, allow_nan=False,
                     phrase="a number of seconds >= 0 or None")
        replacement = Replacement(session, self._config.start_timeout)
        later = Deferred()
        with self._lock:
            state = self._state
            if self._closing:
                raise self._closed_error("replace_service()")
            if self._replacing is not None:
                raise errors.LifecycleError(
                    "service %r: a replacement of its plugin is already under way"
                    % self.name, service=self.name, state=state)
            if state is _READY or state is _STOPPED:  # no plugin runs: swap it
                self._install(replacement)
                self._note(_K.LIFECYCLE, "plugin replaced (%d so far)" % self._replacements)
                return self._snapshot()
            if state is _RUNNING:
                self._request_replace(replacement, timeout, later)
        later.run()
        if state is _FAILED:
            life = self._request_restart(timeout, replacement)
            self._bound_new_start(life, replacement)
        elif state is not _RUNNING:
            raise errors.LifecycleError(
                "cannot replace the plugin of service %r while it is %s"
                % (self.name, state.value), service=self.name, state=state)
        with self._lock:
            self._state_changed.wait_for(lambda: replacement.outcome is not None)
        outcome = replacement.outcome
        if isinstance(outcome, errors.PluginServiceError):
            raise outcome
        return self.status()

    def _request_replace(self, replacement: Replacement, timeout: Optional[float],
                         later: Deferred) -> None:
        """RUNNING: ask the worker to hand over after the event in flight, and
        bound the wait for the old plugin (lock held)."""
        self._replacing = replacement
        self._recall_ahead(later)  # what was handed ahead goes to the new plugin
        if self._worker_waiting:
            self._worker_waiting = False
            self._not_empty.notify_all()
        bound = self._config.stop_timeout if timeout is None else timeout
        if bound is not None:
            self._runtime.watchdog.schedule(_monotonic() + bound, self._on_replace_bound,
                                            self._life, replacement, bound)

    def _letting_go(self, life: int, replacement: Replacement) -> bool:
        """Whether the old plugin still holds up ``replacement`` (lock held)."""
        return self._life == life and self._replacing is replacement and (
            not replacement.committed or self._phase is _IN_STOP)

    def _on_replace_bound(self, life: int, replacement: Replacement, bound: float) -> None:
        """The old plugin did not let go within the bound: cancel its handler and
        grant it ``cancel_grace``, as a stop's bound does."""
        with self._lock:
            if not self._letting_go(life, replacement):
                return
            if self._phase is _IN_DISPATCH and self._current_ctx is not None:
                self._current_ctx._cancel()
            grace = self._config.cancel_grace
            if grace is not None:
                self._runtime.watchdog.schedule(_monotonic() + grace, self._on_replace_grace,
                                                life, replacement, bound, grace)

    def _on_replace_grace(self, life: int, replacement: Replacement, bound: float,
                          grace: float) -> None:
        """Past the grace: the event in flight times out and the service fails,
        its queue kept for the new plugin (its thread is left to return)."""
        later = Deferred()
        with self._lock:
            if not self._letting_go(life, replacement):
                return
            phase = self._phase
            in_handler = phase is _IN_DISPATCH and self._current is not None
            if in_handler and not self._timed_out_current:
                self._time_out_current(bound, later, "still running when its plugin was "
                                       "replaced, past the bound and the grace")
            self._fail(self._note(
                _K.SERVICE_FAILED, "the replaced plugin did not let go: %s still running "
                "%.3gs after the %.3gs bound" % (phase or "worker", grace, bound)),
                later, on_return=in_handler)
        later.run()

    def _hand_over(self, life: int, plugin: Any) -> bool:
        """On the old worker, its loop left: if a replacement waits, stop the old
        plugin and start a fresh worker for the new one. True if it did (this
        thread is then done with the life)."""
        with self._lock:
            replacement = self._replacing
            if self._life != life or replacement is None or self._state is not _RUNNING:
                return False
            self._install(replacement)
            self._phase = _IN_STOP
            self._auto_life = True  # a failed start of the new plugin may be restarted
            self._plugin = None
            self._dispatcher = None
            self._consecutive_failures = 0
        try:
            plugin.stop()
            text = None
        except BaseException as exc:
            text = describe(exc)
            log_traceback(self._log, "stop() of the replaced plugin raised %s" % text, exc)
        with self._lock:
            if text is not None:
                self._note(_K.SERVICE_FAILED, "stop() of the replaced plugin raised %s; "
                           "the replacement goes on" % text)
            if self._life != life or self._replacing is not replacement:
                return False  # failed meanwhile (the bound): this worker exits
            # RUNNING, or STOPPING: a stop that came meanwhile drains the queue
            # through the new plugin.
            self._phase = _IN_START
            worker = threading.Thread(target=self._work, args=(life,), name=self.name,
                                      daemon=True)
            self._worker = worker
            worker.start()
            self._bound_new_start(life, replacement)
        return True

    def _bound_new_start(self, life: int, replacement: Replacement) -> None:
        bound = replacement.start_bound
        if bound is not None:
            self._runtime.watchdog.schedule(_monotonic() + bound, self._on_new_start_bound,
                                            life, replacement, bound)

    def _on_new_start_bound(self, life: int, replacement: Replacement, bound: float) -> None:
        later = Deferred()
        with self._lock:
            if self._life == life and self._replacing is replacement \
                    and self._phase is _IN_START:
                self._fail(self._note(_K.SERVICE_FAILED, "start() of the new plugin did "
                                      "not return within %.3gs" % bound), later)
        later.run()
