"""Lifecycle control: the only code that changes a service's state.

Lives, transitions (checked against the table in ``_lifecycle``), failures, the
start bound and the restart policy. Stopping, with its bound and grace, is in
``stopping``; both go through ``_transition``, the one writer of ``_state``.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional

from .. import errors
from .._config import RestartPolicy
from .._diagnostics import Diagnostic, ServiceStatus
from .._lifecycle import LifecycleState, can_transition
from .backoff import GiveUp, RestartBackoff
from .core import (
    _FAILED,
    _IDLE,
    _IN_CLEANUP,
    _IN_START,
    _IN_STOP,
    _K,
    _READY,
    _RUNNING,
    _STARTING,
    _STOPPED,
    _STOPPING,
    Deferred,
    _monotonic,
)
from .inflight import InFlight

if TYPE_CHECKING:  # pragma: no cover
    from .replacing import Replacement


#: Each state's value: an Enum's ``value`` is a property, slow for every transition.
_NAMES = {state: state.value for state in LifecycleState}


class Control(InFlight):
    """Starting, restarting and failing (lock held unless said otherwise)."""

    __slots__ = ()

    def _transition(self, target: LifecycleState, why: str = "") -> None:
        """The only place the state changes: checks the table, records, notifies."""
        current = self._state
        if not can_transition(current, target):
            raise errors.LifecycleError(
                "service %r cannot go from %s to %s" % (self.name, current.value, target.value),
                service=self.name, state=current,
            )
        self._state = target
        diagnostic = self._note(_K.LIFECYCLE, "%s -> %s%s" % (
            _NAMES[current], _NAMES[target], " (%s)" % why if why else ""))
        listeners = self._runtime.listeners
        if listeners.listening:  # queued in transition order, told on their own thread
            listeners.post(self.name, current, target, diagnostic)
        self._state_changed.notify_all()
        # The worker and blocked producers re-check the state when woken.
        if self._worker_waiting:
            self._worker_waiting = False
            self._not_empty.notify_all()
        if self._producers_waiting:
            self._not_full.notify_all()

    def _fail(self, diagnostic: Diagnostic, later: Deferred, clean_up: bool = False,
              on_return: bool = False) -> None:
        """Go FAILED (once per life); queued events wait for a restart or are
        dropped (and past the restart intensity, the policy gives up).

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
        backoff = self._restart_backoff()  # before the transition: it reads the state
        restart = backoff is not None and self._restart_allowed(backoff.policy)
        was_running = self._state is _RUNNING
        if self._replacing is not None:
            self._replacement_failed(diagnostic)
        self._transition(_FAILED, diagnostic.kind.value)
        self._recall_ahead(later)
        self._fail_pending = None
        if backoff is None or not restart:
            if not self._kept:
                self._drop_queued(errors.ServiceFailed, later)
            if backoff is not None:
                self._give_up(backoff.policy, later)
            return
        self._restart_timer = self._runtime.watchdog.schedule(
            _monotonic() + backoff.next_wait(was_running), self._on_restart_due, self._life)

    def _replacement_failed(self, diagnostic: Diagnostic) -> None:
        """The service fails with a replacement under way: the new plugin is the
        service's from now on (a restart starts it; the old one is not restored),
        and the queue is kept for it. Its caller is told (lock held)."""
        replacement = self._replacing
        assert replacement is not None
        self._replacing = None
        if not replacement.committed:
            self._install(replacement)
        # Kept only for a plugin that may still run it: a stop or a close under
        # way ends the service, so its queue is dropped with it (every event has
        # its outcome), not held for a restart that will never come.
        self._kept = not (self._closing or self._state is _STOPPING)
        replacement.outcome = errors.ServiceFailed(
            "service %r failed while its plugin was replaced: %s; its queue is %s"
            % (self.name, diagnostic.message,
               "kept for the new plugin" if self._kept else "dropped (stopping)"),
            service=self.name, state=_FAILED)

    def _install(self, replacement: "Replacement") -> None:
        """The replacement's plugin is the service's from now on (lock held)."""
        replacement.committed = True
        self._session = replacement.session
        self._replacements += 1

    def _replacement_started(self, replacement: "Replacement") -> None:
        """The new plugin's ``start()`` returned: the replacement is done."""
        self._replacing = None
        replacement.outcome = True
        self._note(_K.LIFECYCLE, "plugin replaced (%d so far)" % self._replacements)
        self._state_changed.notify_all()

    def _restart_backoff(self) -> Optional[RestartBackoff]:
        """The restart policy's backoff when this failure is one it may restart;
        None for a failed start reported to its caller, a failed stop, or once
        the host is closing."""
        backoff = self._backoff
        if backoff is None or self._closing:
            return None
        if self._phase is _IN_START and not self._auto_life:
            return None  # a failed start is reported to its caller, not restarted
        if self._state is _STOPPING:
            return None  # a failed stop stays FAILED
        return backoff

    def _restart_allowed(self, policy: RestartPolicy) -> bool:
        """Whether the restart intensity allows one more: fewer than
        ``max_restarts`` automatic restarts within the last ``window`` seconds."""
        recent = self._auto_restarts
        if policy.window is not None:
            horizon = _monotonic() - policy.window
            while recent and recent[0] < horizon:
                recent.popleft()
        return len(recent) < policy.max_restarts

    def _give_up(self, policy: RestartPolicy, later: Deferred) -> None:
        """The restart intensity is exceeded: the service stays FAILED, and the
        policy's ``on_give_up`` is called once the lock is released."""
        self._log.error("gave up restarting: {} automatic restarts within {}; stays FAILED",
                        policy.max_restarts,
                        "its life" if policy.window is None else "%gs" % policy.window)
        if policy.on_give_up is not None:
            later.add(GiveUp(policy.on_give_up, self.name, self._failure, self._log).start,
                      None)

    def _recall_ahead(self, later: Deferred) -> None:
        """Nothing handed over ahead may run any more (a failure, a stop without
        drain): the dispatcher recalls it (lock held; the call runs after it)."""
        dispatcher = self._dispatcher
        if self._room < self._capacity and dispatcher is not None:  # some handed ahead
            later.add(dispatcher.recall, None)

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
        self._dispatcher = None
        self._current = None
        self._timed_out_current = False
        self._deadline = None
        self._fail_pending = None
        self._consecutive_failures = 0
        self._drain = True
        self._kept = False  # this life takes the queue
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
        later = Deferred()
        with self._lock:
            if self._life == life and self._phase is _IN_START and self._replacing is None \
                    and (self._state is _STARTING or self._state is _STOPPING):
                diagnostic = self._note(
                    _K.SERVICE_FAILED, "start() did not return within %.3gs" % bound)
                self._fail(diagnostic, later)
        later.run()

    def _on_restart_due(self, life: int) -> None:
        with self._lock:
            if self._life != life or self._state is not _FAILED or self._closing:
                return
            self._restart_timer = None
            if self._session.shared and self._worker_busy():
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

    def _request_restart(self, timeout: Optional[float],
                         replacement: Optional["Replacement"] = None) -> int:
        """Begin a new life of a FAILED or STOPPED service; the life to wait for.
        With ``replacement``, its plugin is the one started (``replace_service``)."""
        waits = not self._on_runtime_thread()
        with self._lock:
            if waits and self._session.shared and self._phase is _IN_CLEANUP:
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
            if self._session.shared and self._worker_busy():
                raise errors.LifecycleError(
                    "service %r: the previous life is still inside %s; a shared plugin "
                    "instance is not restarted under it" % (self.name, self._phase),
                    service=self.name, state=state)
            self._cancel_restart_timer()
            if self._backoff is not None:
                self._backoff.reset()  # restarted by hand: the backoff starts over
            if replacement is None:
                self._restarts += 1
            else:
                self._install(replacement)
            self._begin_life(auto=False)
            self._replacing = replacement  # its start's outcome is the replacement's
            return self._life
