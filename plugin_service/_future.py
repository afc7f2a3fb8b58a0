"""The futures the host hands out."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any, Optional

from loguru import logger

from . import errors

__all__ = ["GuardedFuture", "DispatchFuture"]

_DONE = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})

# Orders the lazy creation of a DispatchFuture's condition against the worker's
# settling it without one (see DispatchFuture). Held for a few bytecodes only.
_condition_made = threading.Lock()


class GuardedFuture(Future):  # type: ignore[type-arg]
    """A Future whose done-callbacks cannot break the thread that resolves it.

    ``Future`` guards callbacks against ``Exception`` only; a callback raising
    ``SystemExit`` or ``KeyboardInterrupt`` would skip the callbacks after it and
    escape into our worker or watchdog. Here each is run once and any raise logged.
    """

    def _invoke_callbacks(self) -> None:
        for callback in self._done_callbacks:  # type: ignore[attr-defined]
            try:
                callback(self)
            except BaseException:
                logger.opt(exception=True).error("done-callback {!r} raised", callback)


class DispatchFuture(GuardedFuture):
    """A :class:`concurrent.futures.Future` for one submitted event (``event``).

    It resolves to what ``handle_ingress`` returned, or raises the typed outcome
    (``DispatchFailed``, ``DispatchTimeout``, ``ServiceStopped``, ``ServiceFailed``).
    ``cancel()`` withdraws an event still in the queue (it then counts as dropped and
    the plugin never sees it); once dispatch has begun it returns False.
    """

    # Made without Future.__init__: its Condition and RLock cost more than the
    # rest of a submit, and most futures are never waited on through them. The
    # condition is made on first use by whoever waits, adds a callback or calls
    # concurrent.futures.wait(); until then nobody can be waiting, so the worker
    # settles the future without it. Both sides decide under _condition_made, so
    # a waiter either finds the future settled or is notified through the
    # condition like with any Future.

    def __init__(self, event: Any, owner: Any = None) -> None:
        self._cond: Optional[threading.Condition] = None
        self._state = PENDING
        self._result: Any = None
        self._exception: Optional[BaseException] = None
        self._waiters: list = []  # type: ignore[type-arg]
        self._done_callbacks: list = []  # type: ignore[type-arg]
        self.event = event
        self._owner = owner

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _condition_made:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    # ------------------------------------------------------------- settling
    def set_result(self, result: Any) -> None:
        if self._cond is None:
            with _condition_made:
                settled = self._cond is None and self._state not in _DONE
                if settled:
                    self._result = result
                    self._state = FINISHED
            if settled:
                return
        super().set_result(result)  # or its InvalidStateError, raised off the lock

    def set_exception(self, exception: Optional[BaseException]) -> None:
        if self._cond is None:
            with _condition_made:
                settled = self._cond is None and self._state not in _DONE
                if settled:
                    self._exception = exception
                    self._state = FINISHED
            if settled:
                return
        super().set_exception(exception)

    def _mark_running(self) -> None:
        """PENDING -> RUNNING, by the service that just took the event out of its
        queue (so it cannot be cancelled any more); nobody waits for RUNNING."""
        self._state = RUNNING

    def _mark_pending(self) -> None:
        """RUNNING -> PENDING: an event sent ahead to a remote plugin came back
        unrun and is queued again (so ``cancel()`` can withdraw it again)."""
        self._state = PENDING

    # -------------------------------------------------------------- reading
    def done(self) -> bool:
        return self._state in _DONE

    def running(self) -> bool:
        return self._state == RUNNING

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def result(self, timeout: Optional[float] = None) -> Any:
        if self._state == FINISHED:  # set after _result/_exception: no lock needed
            exception = self._exception
            if exception is not None:
                try:
                    raise exception
                finally:
                    del exception  # no frame <-> exception cycle, as in Future
            return self._result
        self._refuse_waiting_on_own_worker()
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if self._state == FINISHED:
            return self._exception
        self._refuse_waiting_on_own_worker()
        return super().exception(timeout)

    def _refuse_waiting_on_own_worker(self) -> None:
        """A handler waiting for an event of its own service would wait on itself:
        its worker is the only one that could ever resolve it."""
        owner = self._owner
        if owner is not None and not self.done() and owner._on_runtime_thread():
            raise errors.LifecycleError(
                "service %r: its own callbacks and done-callbacks on the watchdog thread "
                "cannot wait for its events; they would wait on themselves" % owner.name,
                service=owner.name)

    # ----------------------------------------------------------- cancelling
    def cancel(self) -> bool:
        owner = self._owner
        if owner is None:
            cancelled: bool = super().cancel()
            return cancelled
        withdrawn: bool = owner._withdraw(self)
        return withdrawn

    def _cancel_withdrawn(self) -> bool:
        cancelled: bool = super().cancel()
        # Future.cancel() leaves waiters of wait()/as_completed() to the executor,
        # which would call this next; we are that executor.
        self.set_running_or_notify_cancel()
        return cancelled
