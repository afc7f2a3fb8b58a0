"""One plugin host per gunicorn worker, created after the fork and drained on exit.

gunicorn forks its workers from a master process (and with ``--preload`` imports
the application in the master first). A host's threads do not survive a fork,
so a host created at import time is useless in the workers: there every call
raises ``HostForked``. :class:`WorkerHost` gives each worker its own host
instead, through three of gunicorn's server hooks::

    # app.py
    from plugin_service.integrations.gunicorn import WorkerHost

    def build_host():
        host = PluginHost()
        host.add_service("orders", Orders)
        host.start_all(timeout=10)
        return host

    hosts = WorkerHost(build_host)

    def app(environ, start_response):
        hosts.host.submit("orders", ...)   # this worker's host
        ...

    # gunicorn.conf.py
    from app import hosts
    post_fork = hosts.post_fork                # builds the worker's host
    post_worker_init = hosts.post_worker_init  # notes when a stop signal arrives
    worker_exit = hosts.worker_exit            # drains within graceful_timeout

This module never imports gunicorn: the hooks only use the ``server`` and
``worker`` objects gunicorn passes them, and their ``cfg``.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, Optional

from .. import errors
from .._checks import non_negative
from .._host import PluginHost

__all__ = ["WorkerHost"]

#: How long gunicorn's master waits for workers after a quick shutdown
#: (SIGINT/SIGQUIT) was asked for during a graceful one.
QUICK_SHUTDOWN = 2.0

_GRACEFUL = (signal.SIGTERM,)
_QUICK = (signal.SIGQUIT, signal.SIGINT)


class WorkerHost:
    """Builds a host with ``factory`` in each gunicorn worker and closes it there.

    ``factory()`` runs in the worker, in gunicorn's ``post_fork`` hook, and must
    return a ``PluginHost`` (usually with its services started); if it raises,
    the worker fails to boot, loudly. :attr:`host` is that worker's host. When
    the worker exits, ``worker_exit`` closes the host, draining queued events,
    bounded by what is left of gunicorn's ``graceful_timeout`` (and ``timeout``)
    since the worker was told to stop, less ``margin`` seconds, so the master
    never kills the worker in the middle of the drain. Events a drain cannot
    finish in time are dropped and recorded, as ``PluginHost.close`` promises.
    """

    def __init__(self, factory: Callable[[], PluginHost], *, margin: float = 1.0) -> None:
        if not callable(factory):
            raise TypeError("factory must be a callable returning a PluginHost, got %r"
                            % (factory,))
        margin = non_negative("margin", margin, optional=False, number=True,
                              phrase="a number of seconds >= 0")
        self._factory = factory
        self._margin = float(margin)
        self._host: Optional[PluginHost] = None
        self._pid = 0  # the worker process that built ``_host``
        self._stop_began: Optional[float] = None  # monotonic time of the stop signal
        self._quick = False  # that signal asked for a quick shutdown

    @property
    def host(self) -> PluginHost:
        """This worker's host.

        Raises ``LifecycleError`` where there is none: in gunicorn's master, or in
        a worker whose ``post_fork`` hook is not ``WorkerHost.post_fork`` (check
        the gunicorn config file); ``HostForked`` in a process forked from a worker.
        """
        host = self._host
        if host is not None and self._pid != os.getpid():
            raise errors.HostForked(self._pid, os.getpid())
        if host is None:
            raise errors.LifecycleError(
                "no plugin host in process %d: WorkerHost builds one in each gunicorn "
                "worker after the fork; set post_fork = hosts.post_fork, "
                "post_worker_init = hosts.post_worker_init and worker_exit = "
                "hosts.worker_exit in the gunicorn config file" % os.getpid())
        return host

    # ------------------------------------------------------------ the hooks
    def post_fork(self, server: Any, worker: Any) -> None:
        """gunicorn's ``post_fork(server, worker)``: build this worker's host."""
        host = self._factory()
        if not isinstance(host, PluginHost):
            raise TypeError("the WorkerHost factory must return a PluginHost, got %r"
                            % (host,))
        self._host, self._pid = host, os.getpid()
        self._stop_began, self._quick = None, False

    def post_worker_init(self, worker: Any) -> None:
        """gunicorn's ``post_worker_init(worker)``: note when a stop signal arrives.

        Wraps the handlers gunicorn just installed for SIGTERM (graceful stop) and
        SIGQUIT/SIGINT (quick stop); each still runs, right after the note.
        """
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in _GRACEFUL + _QUICK:
            handler = signal.getsignal(signum)
            if callable(handler):
                signal.signal(signum, self._noting(handler, signum in _QUICK))
        # signal.signal() drops the flag gunicorn set so that SIGTERM does not
        # interrupt system calls of requests in progress: set it again.
        signal.siginterrupt(signal.SIGTERM, False)

    def worker_exit(self, server: Any, worker: Any) -> None:
        """gunicorn's ``worker_exit(server, worker)``: close this worker's host,
        draining within what is left of the graceful timeout.

        gunicorn also calls this hook in the master for a worker it reaped; there
        is no host of ours there, and it does nothing.
        """
        host = self._host
        if host is None or self._pid != os.getpid():
            return
        host.close(timeout=self.drain_timeout(getattr(worker, "cfg", None)))

    # ------------------------------------------------------------- bounds
    def drain_timeout(self, cfg: Any) -> float:
        """Seconds left for the drain: gunicorn's ``graceful_timeout`` (capped by its
        worker ``timeout``, and by the master's 2 s after a quick shutdown) since
        the stop signal, or since now without one, less the margin; never < 0."""
        bound = float(getattr(cfg, "graceful_timeout", 30))
        heartbeat = getattr(cfg, "timeout", 0)
        if heartbeat:  # 0 disables gunicorn's worker timeout
            bound = min(bound, float(heartbeat))
        if self._quick:
            bound = min(bound, QUICK_SHUTDOWN)
        now = time.monotonic()
        began = now if self._stop_began is None else self._stop_began
        return max(0.0, bound - (now - began) - self._margin)

    def _noting(self, handler: Callable[[int, Any], Any],
                quick: bool) -> Callable[[int, Any], Any]:
        def note_then_handle(signum: int, frame: Any) -> Any:
            if self._stop_began is None:
                self._stop_began = time.monotonic()
            self._quick = self._quick or quick
            return handler(signum, frame)
        return note_then_handle
