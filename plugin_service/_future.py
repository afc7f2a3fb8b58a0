"""The futures the host hands out."""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import TYPE_CHECKING, Any, Callable, Optional

from loguru import logger

from . import errors
from ._events import IngressEvent
from ._fork import forked_error
from ._guarded import failure_log, text_of
from ._typevars import ResultT

__all__ = ["GuardedFuture", "DispatchFuture"]

_DONE = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})


def _read_cid(event: Any) -> Optional[str]:
    """The correlation id of an event subclass, or None if it will not say."""
    try:
        cid = event.correlation_id
    except BaseException:
        return None
    return cid if type(cid) is str else None

# Orders the lazy creation of a DispatchFuture's condition against the worker's
# settling it without one (see DispatchFuture). Held for a few bytecodes only.
_condition_made = threading.Lock()

# Where Future itself reports a raising done-callback: a host sees it there
# without enabling loguru (the standard library's last-resort handler prints it).
_futures_log = logging.getLogger("concurrent.futures")


def _report_callback_error(future: Any, callback: Any, exc: BaseException) -> None:
    """Log a raising done-callback, redacted, on ``concurrent.futures`` and loguru,
    naming the service or tool whose future it was."""
    try:
        text = failure_log(exc)
        where = text_of(callback, 200)
        subject = future._subject()
        whose = type(future).__name__ if subject is None else "%s of %s" % (
            type(future).__name__, subject)
        _futures_log.error("exception calling callback %s for %s: %s", where, whose, text)
        logger.error("{}done-callback {} raised: {}", "" if subject is None else subject + ": ",
                     where, text)
    except BaseException:  # pragma: no cover - reporting never breaks the settle
        pass


def _new_lock_after_fork() -> None:
    # A thread that held the lock at a fork does not exist in the child: without
    # a fresh lock, every future of a host made there could deadlock.
    global _condition_made
    _condition_made = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


class GuardedFuture(Future[ResultT]):
    """A Future whose done-callbacks cannot break the thread that resolves it.

    ``Future`` guards callbacks against ``Exception`` only; a callback raising
    ``SystemExit`` or ``KeyboardInterrupt`` would skip the callbacks after it and
    escape into our worker or watchdog. Here each is run once and any raise is
    logged, redacted, on the ``concurrent.futures`` logger as ``Future`` does.

    ``result()`` raises the exception it was given even when that exception's
    ``__bool__`` is False (``Future`` returns None to a waiter then).
    """

    def _subject(self) -> Optional[str]:
        """``"service 'name'"`` or ``"tool 'name'"``: whose future this is, for logs."""
        return None

    def _invoke_callbacks(self) -> None:
        for callback in self._done_callbacks:  # type: ignore[attr-defined]
            try:
                callback(self)
            except BaseException as exc:
                _report_callback_error(self, callback, exc)

    def add_done_callback(self, fn: Callable[[Future[ResultT]], object]) -> None:
        with self._condition:
            if self._state not in _DONE:
                self._done_callbacks.append(fn)  # type: ignore[attr-defined]
                return
        try:  # already done: run here, on the caller's thread, as Future does
            fn(self)
        except Exception as exc:
            _report_callback_error(self, fn, exc)

    def _mark_withdrawn(self) -> None:
        """PENDING -> CANCELLED, under the lock (the service's or the tool's) that
        withdrew the work, so a second ``cancel()`` racing this one answers True
        too. Waiters and callbacks learn it from :meth:`_announce_withdrawn`, after
        that lock is released."""
        with self._condition:
            self._state = CANCELLED
            self._condition.notify_all()

    def _announce_withdrawn(self) -> bool:
        """After that lock: wake ``wait()``/``as_completed()`` waiters (which
        ``Future.cancel()`` leaves to the executor, which calls
        ``set_running_or_notify_cancel()`` next; we are that executor) and run the
        done-callbacks."""
        self.set_running_or_notify_cancel()
        self._invoke_callbacks()
        return True

    def _outcome(self) -> ResultT:
        """The result, or raise the exception (state FINISHED)."""
        exception = self._exception
        if exception is not None:
            try:
                raise exception
            finally:
                del exception  # no frame <-> exception cycle, as in Future
        return self._result  # type: ignore[return-value]  # FINISHED: set_result's

    def result(self, timeout: Optional[float] = None) -> ResultT:
        if self._state == FINISHED:
            return self._outcome()
        with self._condition:
            state = self._state
            if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                raise CancelledError()
            if state != FINISHED:
                self._condition.wait(timeout)
                state = self._state
                if state in (CANCELLED, CANCELLED_AND_NOTIFIED):
                    raise CancelledError()
                if state != FINISHED:
                    raise FuturesTimeout()
        return self._outcome()


class DispatchFuture(GuardedFuture[ResultT]):
    """A :class:`concurrent.futures.Future` for one submitted event (``event``).

    It resolves to what ``handle_ingress`` returned, or raises the typed outcome
    (``DispatchFailed``, ``DispatchTimeout``, ``ServiceStopped``, ``ServiceFailed``).
    Generic over that result for type checkers (``DispatchFuture[str]``); at
    run time it is a plain ``Future`` subclass.
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

    #: When its service accepted it, for the queue-wait histogram: stamped by
    #: ``submit`` only when the service keeps latency histograms.
    _queued_at = 0.0

    def __init__(self, event: IngressEvent, owner: Any = None) -> None:
        self._cond: Optional[threading.Condition] = None
        self._state = PENDING
        self._result = None
        self._exception: Optional[BaseException] = None
        self._waiters: list = []  # type: ignore[type-arg]
        self._done_callbacks: list = []  # type: ignore[type-arg]
        self.event = event
        self._owner = owner
        # Read once, here on the submitting thread: failure paths that run under
        # the service lock must not read an attribute an event subclass computes.
        self._cid: Optional[str] = (event.correlation_id if type(event) is IngressEvent
                                    else _read_cid(event))

    def _made_condition(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            with _condition_made:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    if TYPE_CHECKING:
        # An attribute to type checkers, as on Future: the protocol by which
        # concurrent.futures.as_completed() takes futures asks for one.
        _condition: threading.Condition
    else:
        _condition = property(_made_condition)

    # ------------------------------------------------------------- settling
    def set_result(self, result: ResultT) -> None:
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

    def result(self, timeout: Optional[float] = None) -> ResultT:
        # GuardedFuture._outcome written out: this is the end of every round trip.
        if self._state == FINISHED:  # set after _result/_exception: no lock needed
            exception = self._exception
            if exception is not None:
                try:
                    raise exception
                finally:
                    del exception  # no frame <-> exception cycle, as in Future
            return self._result  # type: ignore[return-value]  # FINISHED: set_result's
        self._refuse_waiting_on_own_worker()
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if self._state == FINISHED:
            return self._exception
        self._refuse_waiting_on_own_worker()
        return super().exception(timeout)

    def _subject(self) -> Optional[str]:
        name = getattr(self._owner, "name", None)
        return "service %s" % str.__repr__(name) if isinstance(name, str) else None

    def _refuse_waiting_on_own_worker(self) -> None:
        """A handler waiting for an event of its own service would wait on itself:
        its worker is the only one that could ever resolve it. So would anyone
        waiting, in a forked child, on an event the parent accepted."""
        self._refuse_if_inherited()
        owner = self._owner
        if owner is not None and not self.done() and owner._on_runtime_thread():
            raise errors.LifecycleError(
                "service %r: its own callbacks and done-callbacks on the watchdog thread "
                "cannot wait for its events; they would wait on themselves" % owner.name,
                service=owner.name)

    def add_done_callback(self, fn: Callable[[DispatchFuture[ResultT]], object]) -> None:
        self._refuse_if_inherited()
        super().add_done_callback(fn)  # type: ignore[arg-type]  # called with self only

    def _refuse_if_inherited(self, even_if_done: bool = False) -> None:
        """In a process forked from the host's, an event still pending is the
        parent's: no thread here will ever resolve it (and its service's lock may
        be held forever)."""
        owner = self._owner
        if owner is not None and owner._forked_from and (even_if_done or not self.done()):
            raise forked_error(owner._forked_from, owner.name)

    # ----------------------------------------------------------- cancelling
    def cancel(self) -> bool:
        self._refuse_if_inherited(even_if_done=True)  # its lock may be held forever
        owner = self._owner
        if owner is None:
            cancelled: bool = super().cancel()
            return cancelled
        withdrawn: bool = owner._withdraw(self)
        return withdrawn

    def _mark_withdrawn(self) -> None:
        if self._cond is None:  # nobody waits yet: no condition to make for it
            with _condition_made:
                if self._cond is None:
                    self._state = CANCELLED
                    return
        super()._mark_withdrawn()
