"""The worker thread of one life: ``start()``, the dispatcher, ``stop()``.

Guava's ``AbstractExecutionThreadService`` shape: start up, run, shut down, on a
thread of its own; the state changes go through lifecycle control. When its
events failed the service, the worker gives the plugin its cleanup instead
(``cleanup``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple, cast

from .. import errors
from .._guarded import describe, failure_log
from .._logs import log_traceback
from .core import (
    _FAILED,
    _IDLE,
    _IN_START,
    _IN_STOP,
    _K,
    _RUNNING,
    _STARTING,
    _STOPPED,
    _STOPPING,
    Deferred,
)
from .replacing import Replacing

if TYPE_CHECKING:  # pragma: no cover
    from .dispatch import Dispatcher
    from .handle import ServiceHandle


class Worker(Replacing):
    """What runs on the worker thread, around the dispatcher."""

    __slots__ = ()

    def _work(self, life: int) -> None:
        """The worker thread of one life: start(), the dispatch loop, stop(); or,
        when its events failed the service, the plugin's cleanup."""
        plugin = None
        try:
            started = self._start_plugin(life)
            if started is not None:
                plugin, dispatcher = started
                dispatcher.run(life)
                if self._hand_over(life, plugin):
                    return  # a fresh worker serves this life with the new plugin
                self._stop_plugin(life, plugin)
        except BaseException as exc:  # a bug of ours: fail loudly, never strand events
            self._worker_crashed(life, exc)
        if plugin is not None:
            self._clean_up_after_failure(life, plugin)
        self._worker_exit(life)

    def _start_plugin(self, life: int) -> Optional[Tuple[Any, "Dispatcher"]]:
        try:
            plugin = self._session.new_plugin()
            plugin.start()
            # Read after start(): a proxy for a remote plugin learns them there.
            ingresses = {ingress.name: ingress for ingress in getattr(plugin, "ingresses", ())}
        except BaseException as exc:
            text = describe(exc)
            log_traceback(self._log, "start() raised %s" % text, exc)  # before the lock
            later = Deferred()
            with self._lock:
                if self._life == life and self._phase is _IN_START:
                    diagnostic = self._note(_K.SERVICE_FAILED, "start() raised %s" % text)
                    if self._state is _STARTING or self._state is _STOPPING \
                            or self._replacing is not None:  # or RUNNING, replaced
                        self._fail(diagnostic, later)
                    self._phase = _IDLE
            later.run()
            return None
        # Outside the try: the dispatcher is ours, not the plugin's start().
        dispatcher = self._session.dispatcher(cast("ServiceHandle", self), plugin)
        with self._lock:
            if self._life == life and self._phase is _IN_START:
                replacement = self._replacing
                if replacement is not None:  # a new plugin: RUNNING (or STARTING) all along
                    self._replacement_started(replacement)
                if self._state is _STARTING or (
                        replacement is not None and self._state is _RUNNING):
                    self._phase = _IDLE
                    self._plugin = plugin
                    self._dispatcher = dispatcher
                    self._ingresses = ingresses
                    self._failure = None
                    if self._state is _STARTING:
                        self._transition(_RUNNING)
                    if self._backoff is not None:
                        self._backoff.running()  # for RestartPolicy.reset_after
                    return plugin, dispatcher
                if self._state is _STOPPING:  # stopped while starting
                    self._phase = _IDLE
                    self._plugin = plugin
                    self._dispatcher = dispatcher
                    return plugin, dispatcher
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
            text = describe(exc)
            self._log.warning("stop() after a late start() raised {}", text)
            log_traceback(self._log, "stop() after a late start() raised %s" % text, exc)

    def _stop_plugin(self, life: int, plugin: Any) -> None:
        """After the loop: call ``plugin.stop()`` if the service is stopping."""
        later = Deferred()
        with self._lock:
            if self._life != life or self._state is not _STOPPING:
                return
            self._drop_queued(errors.ServiceStopped, later)
            self._phase = _IN_STOP
        later.run()
        try:
            plugin.stop()
            error: Optional[BaseException] = None
        except BaseException as exc:
            error = exc
        text = None
        if error is not None:
            text = describe(error)
            log_traceback(self._log, "stop() raised %s" % text, error)
        with self._lock:
            if self._life != life or self._state is not _STOPPING:
                return
            self._phase = _IDLE
            if text is None:
                self._transition(_STOPPED)
            else:
                diagnostic = self._note(_K.SERVICE_FAILED, "stop() raised %s" % text)
                self._fail(diagnostic, later)
        later.run()

    def _worker_crashed(self, life: int, exc: BaseException) -> None:
        self._log.critical("worker crashed: {}", failure_log(exc))
        text = describe(exc)
        later = Deferred()
        with self._lock:
            if self._life != life:
                return
            future = self._current
            if future is not None and not self._timed_out_current:
                self._failed += 1
                self._dead_letter(self._current_event, self._note(
                    _K.DISPATCH_FAILED, "worker crashed: %s" % text, future._cid), later)
                error = errors.DispatchFailed("service %r: worker crashed" % self.name,
                                              service=self.name)
                error.__cause__ = exc
                later.add(future.set_exception, error)
            self._current = None
            self._timed_out_current = False
            diagnostic = self._note(_K.SERVICE_FAILED, "worker crashed: %s" % text)
            if self._state is _STARTING or self._state is _RUNNING \
                    or self._state is _STOPPING:
                self._fail(diagnostic, later, clean_up=True)
        later.run()

    def _worker_exit(self, life: int) -> None:
        with self._lock:
            if self._life == life:
                self._phase = _IDLE
                if self._restart_when_idle and self._state is _FAILED and not self._closing:
                    self._restart_now()
