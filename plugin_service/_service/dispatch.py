"""The seam between a service's worker and the plugin it hands events to.

A ``PluginSession`` is what a backend gives a service: the plugin of each life
and the ``Dispatcher`` that hands it the queued events. ``SerialDispatcher``
(the thread backend's, see ``_backend``) calls ``plugin.handle_ingress`` on the
worker thread, one event at a time. A backend whose plugins live elsewhere
brings a dispatcher of its own, built on the same worker-side calls (``_take``,
``_settle``, ``_start_deadline``, ``Redelivery``...).
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from .._context import DispatchContext
from .._stacks import Ready, StackAnswer, stack_of
from .core import _RUNNING, _STOPPING, Deferred, _monotonic
from .ledger import Failure, _is_instance
from .mailbox import _Posted
from .retry import Redelivery

if TYPE_CHECKING:  # pragma: no cover
    from .handle import ServiceHandle


class Dispatcher(Protocol):
    """Hands one life's queued events to its plugin, on the worker thread."""

    def run(self, life: int) -> None:
        """Dispatch until the life ends or the state says the worker stops handing
        events over; every event taken ends settled (or back in the queue)."""

    def recall(self, _unused: Any = None) -> None:
        """Nothing handed to the plugin ahead of its turn may run any more (the
        service failed, or stops without drain). Called after the lock."""

    def classify(self, exc: BaseException) -> Failure:
        """What a handler's exception means for the service (plugin code may run:
        call it before taking the lock)."""

    def handler_stack(self, worker: Optional[threading.Thread]) -> StackAnswer:
        """Where the handler of the event in flight is (``worker`` is the life's
        worker thread); asked by ``status()`` after the lock, never per event."""


class PluginSession(Protocol):
    """What a backend gives one service: its plugin for each life, and the
    dispatcher that hands that plugin its events."""

    #: Every life runs the same plugin instance (it was registered as one), so no
    #: life may start it while an earlier one is still inside it.
    shared: bool

    def new_plugin(self) -> Any:
        """The plugin of a new life (on its worker thread, before ``start()``)."""

    def dispatcher(self, service: "ServiceHandle", plugin: Any) -> Dispatcher:
        """The dispatcher of a life whose plugin has started."""


class SerialDispatcher:
    """``plugin.handle_ingress`` on the worker thread, one event at a time."""

    __slots__ = ("_service", "_plugin", "_classify")

    def __init__(self, service: "ServiceHandle", plugin: Any,
                 classify: Callable[[BaseException], Failure] = Failure.raised) -> None:
        self._service = service
        self._plugin = plugin
        self._classify = classify

    def recall(self, _unused: Any = None) -> None:
        """Nothing is ever handed over ahead of its turn here."""

    def classify(self, exc: BaseException) -> Failure:
        return self._classify(exc)

    def handler_stack(self, worker: Optional[threading.Thread]) -> StackAnswer:
        """The worker thread's stack: the handler runs on it."""
        return Ready(stack_of(worker))

    def run(self, life: int) -> None:
        # The hot path, written inline on purpose: one lock hold settles the
        # finished event and takes the next, and every name the loop needs is a
        # local (an extra call or attribute hop per event is measurable here).
        service = self._service
        handle = self._plugin.handle_ingress  # read here: a plugin without one crashes the worker
        lock, items = service._lock, service._items
        timeout, retry = service._config.dispatch_timeout, service._config.retry
        # ServiceConfig.latency_histograms; and whether _started is wanted (core)
        timed, stamped = service._timed, service._stamped
        future: Any = None  # a DispatchFuture, or a posted event (_Posted)
        ctx = DispatchContext(None)
        ok = True
        value: Any = None
        later = Deferred()  # one for the life: settling an event allocates none
        while True:
            with lock:
                if service._life != life:
                    return  # abandoned after a stuck handler; its event was decided
                settled = False
                if future is not None:
                    if ok and not service._timed_out_current:
                        # _settle's success case, inline: the next _take (or
                        # _idle) rewrites the fields it would clear.
                        service._succeeded += 1
                        service._consecutive_failures = 0
                        if timed:
                            service._observe_latency(future)
                        if type(future) is not _Posted:  # nobody waits on a post
                            later.add(future.set_result, value)
                        settled = True
                    else:
                        service._settle(future, ok, value, later)
                    future = None
                # With deadlines about, _wait_for_event takes (expired ones first).
                if items and not service._expiry_heap and ((state := service._state) is _RUNNING
                        or (state is _STOPPING and service._drain)):
                    future, ctx = service._take(items, timeout)
                elif settled:
                    service._idle()
            if later._calls:
                later.run()
            if future is None:
                taken = service._wait_for_event(life, timeout)
                if taken is None:
                    return
                future, ctx = taken
            if service._timed_out_current:
                # Decided (stop grace) while the previous callbacks ran on this
                # thread; a merely cancelled one is still handed over, ctx says so.
                ok, value = True, None
                continue
            if timeout is not None:
                # _start_deadline's common case, inline (see there).
                deadline = ctx.deadline = service._deadline = _monotonic() + timeout
                if service._timer_at is None:
                    service._arm_for(future, deadline)
            if stamped:
                service._started = _monotonic()  # when its handler began
            try:
                value = handle(future.event, ctx)
                ok = True
            except BaseException as exc:
                value = exc
                ok = False
                if retry is not None and _is_instance(exc, retry.retry_on) \
                        and not ctx.cancelled:
                    ok, value = Redelivery(service, life, exc, handle, timeout).run()
                if not ok:
                    value = self.classify(value)  # plugin code: before the lock
