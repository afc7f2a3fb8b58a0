"""``ServiceHandle``: the host's handle on one service plugin, the public facade.

The parts it is made of, each one concept (see ``core`` for the state they share
under the one lock): ``ledger`` (counters, diagnostics, snapshot) < ``expiry``
(event deadlines) < ``mailbox``
(``submit`` and the bounded FIFO) < ``inflight`` (the event being handled and
its timer) < ``control`` (lives, transitions, failures, restarts) < ``stopping``
< ``cleanup`` < ``worker`` (start -> dispatcher -> stop on the worker thread).
Each part builds on the ones before it.

The host drives lifecycles in two phases, so that many services start or stop
side by side without a thread each: ``_request_start``/``_wait_started``,
``_request_stop``/``_await_stopped`` (see ``PluginHost.start_all`` and ``close``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Generic, Iterable, List, Optional, Tuple, TypeVar

from .._config import ServiceConfig
from .._diagnostics import Diagnostic, ServiceStatus
from .._events import IngressEvent
from .._fork import forked_error, forked_service_status
from .._future import DispatchFuture
from .._lifecycle import LifecycleState
from .._typevars import ResultT
from .core import _FAILED, Runtime
from .dispatch import PluginSession
from .status import Pending, begin_status, finish_status
from .worker import Worker

__all__ = ["ServiceHandle"]

# As ``_listeners.Listener``: the core does not import the host's modules.
_ListenerT = TypeVar("_ListenerT", bound=Callable[
    [str, LifecycleState, LifecycleState, Diagnostic], Any])


class ServiceHandle(Worker, Generic[ResultT]):
    """The host's handle on one service plugin.

    Lifecycle calls (``start``, ``stop``, ``restart``) may come from any thread;
    every plugin callback runs on the service's own worker thread, named after the
    service. ``submit`` validates on the caller's thread and never runs plugin code
    except the ingress's ``validate``.

    For type checkers it is generic over what the plugin's ``handle_ingress``
    returns (``ServiceHandle[str]``; a bare ``ServiceHandle`` is
    ``ServiceHandle[Any]``), so ``submit(event).result()`` is typed.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # The typed views of Mailbox.submit and submit_many, which run as they
        # are: an override here would cost a call per event on the hot path.
        # mypy checks them against the real signatures (an incompatible
        # override is an error).
        def submit(self, event: IngressEvent, *, block: bool = False,
                   timeout: Optional[float] = None) -> DispatchFuture[ResultT]:
            """Validate ``event`` on this thread and enqueue it; see the
            runtime method (``Mailbox.submit``) for what it raises."""

        def submit_many(self, events: Iterable[IngressEvent], *, block: bool = False,
                        timeout: Optional[float] = None) -> List[DispatchFuture[ResultT]]:
            """Validate and enqueue ``events`` in order; see the runtime method
            (``Mailbox.submit_many``) for what it raises."""

    def __init__(self, name: str, session: PluginSession, config: ServiceConfig,
                 runtime: Runtime) -> None:
        super().__init__(name, session, config, runtime)

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
        past that, or if it raises, it is None. ``handler_stack`` is the stack of
        a handler that is overdue (or has run ``ServiceConfig.stack_after``
        seconds), read from its thread at this call; else None."""
        if self._forked_from:
            return forked_service_status(self.name, self._capacity, self._forked_from)
        return finish_status(*begin_status(self))

    def _begin_status(self) -> Tuple[ServiceStatus, Optional[Pending]]:
        return begin_status(self)

    def _finish_status(self, snapshot: ServiceStatus, pending: Optional[Pending],
                       deadline: Optional[float] = None) -> ServiceStatus:
        return finish_status(snapshot, pending, deadline)

    def wait_for(self, state: Any, timeout: Optional[float] = None) -> bool:
        """Block until the service is in ``state``; False if ``timeout`` ran out."""
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        target = LifecycleState(state)
        with self._lock:
            return self._state_changed.wait_for(lambda: self._state is target, timeout)

    def __repr__(self) -> str:
        return "<ServiceHandle %r %s>" % (self.name, self._state.value)

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

    def restart(self, timeout: Optional[float] = None) -> ServiceStatus:
        """Start a FAILED or STOPPED service again, with a fresh plugin instance when
        it was registered as a factory. Raises like :meth:`start` (``HostClosed``
        once the host's ``close()`` has begun). A shared instance still in its
        cleanup after a failure (``on_failure()`` or ``stop()``) is restarted once
        that returns, waiting at most ``stop_timeout``."""
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        life = self._request_restart(timeout)
        self._schedule_start_bound(life, self._start_bound(timeout))
        return self._await_start(life)

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

    # --------------------------------------------------------------- listeners
    def add_listener(self, callback: _ListenerT) -> _ListenerT:
        """Call ``callback(name, from_state, to_state, diagnostic)`` for every later
        transition of this service, across its restarts; returns ``callback``, so
        it also serves as a decorator. It runs like a listener of the host's
        (``PluginHost.add_listener``): on the host's listener thread, in
        transition order, after the host's own listeners of the same transition.

        Raises ``TypeError`` if ``callback`` is not callable, ``HostClosed`` once
        the host's ``close()`` has begun, ``HostForked`` in a forked child.
        """
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        if self._closing:
            raise self._closed_error("add_listener()")
        result: _ListenerT = self._runtime.listeners.add(self.name, callback)
        return result

    def remove_listener(self, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` (its first registration by :meth:`add_listener`);
        ``ValueError`` if it is not registered on this service, like ``list.remove``."""
        if self._forked_from:
            raise forked_error(self._forked_from, self.name)
        self._runtime.listeners.remove(self.name, callback)
