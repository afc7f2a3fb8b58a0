"""The dispatcher of a service with a circuit breaker (``ServiceConfig.breaker``).

Chosen once per life instead of ``SerialDispatcher``, so the plain serial loop
pays nothing for the breaker. It hands ``plugin.handle_ingress`` one event at a
time on the worker thread, as that one does, but takes the next event only
when the breaker lets it pass: while the breaker is open the worker waits on
``not_empty`` until the probe time (a timed wait on the service's condition,
so a stop, a failure or the stop bound wakes it at once) and the events stay
queued. Outcomes reach the breaker where they are recorded (``_settle``, and
the watchdog's ``_time_out_current``), so a timeout decided while the handler
still runs counts at once.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple

from .._context import DispatchContext
from .._future import DispatchFuture
from .core import _RUNNING, _STOPPING, Deferred, _monotonic
from .dispatch import SerialDispatcher
from .ledger import _is_instance
from .retry import Redelivery

if TYPE_CHECKING:  # pragma: no cover
    from .handle import ServiceHandle


def admitted_event(service: "ServiceHandle", life: int, timeout: Optional[float]
                   ) -> Optional[Tuple[DispatchFuture, DispatchContext]]:
    """The next event, once there is one and the breaker lets it pass (taking
    the lock; a half-open breaker's is its probe); None once the worker stops
    handing events over."""
    items, breaker = service._items, service._breaker
    assert breaker is not None
    later = Deferred()
    while True:
        with service._lock:
            while service._life == life:
                state = service._state
                wait: Optional[float] = None
                if items and (state is _RUNNING or (state is _STOPPING and service._drain)):
                    wait = breaker.wait()
                    if wait <= 0.0:
                        # Expired heads never pass (not even as the probe), and
                        # resolve before the next is taken.
                        taken = service._take_unexpired(items, timeout, later)
                        if taken is not None:
                            return taken
                        break
                elif state is not _RUNNING:
                    return None
                # Flagged as waiting either way, so a transition wakes it at once.
                service._worker_waiting = True
                service._not_empty.wait(wait)
                service._worker_waiting = False
            else:
                return None
        later.run()


class BreakerDispatcher(SerialDispatcher):
    """``plugin.handle_ingress`` on the worker thread, one event at a time, each
    once the service's breaker lets it pass (see the module); the rest is the
    serial dispatcher's."""

    __slots__ = ()

    def run(self, life: int) -> None:
        service = self._service
        handle = self._plugin.handle_ingress  # read here: a plugin without one crashes the worker
        timeout = service._config.dispatch_timeout
        later = Deferred()
        while True:
            taken = admitted_event(service, life, timeout)
            if taken is None:
                return
            future, ctx = taken
            if service._timed_out_current:
                ok, value = True, None  # decided (stop grace) before its handler began
            else:
                ok, value = self._deliver(life, handle, future, ctx, timeout)
            with service._lock:
                if service._life != life:
                    return  # abandoned after a stuck handler; its event was decided
                service._settle(future, ok, value, later)
            later.run()

    def _deliver(self, life: int, handle: Callable[..., Any], future: DispatchFuture,
                 ctx: DispatchContext, timeout: Optional[float]) -> Tuple[bool, Any]:
        """Run the handler (and its retries): ``(ok, value)``, a ``Failure`` unless ok."""
        service = self._service
        if timeout is not None:
            service._start_deadline(future, ctx, timeout)
        if service._stamped:
            service._started = _monotonic()  # when its handler began
        try:
            return True, handle(future.event, ctx)
        except BaseException as exc:
            ok = False
            value: Any = exc
            retry = service._config.retry
            if retry is not None and _is_instance(exc, retry.retry_on) and not ctx.cancelled:
                ok, value = Redelivery(service, life, exc, handle, timeout).run()
            if not ok:
                value = self.classify(value)  # plugin code: before the lock
            return ok, value
