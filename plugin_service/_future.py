"""The futures the host hands out."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, Optional

from loguru import logger

from . import errors

__all__ = ["GuardedFuture", "DispatchFuture"]


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

    def __init__(self, event: Any, owner: Any = None) -> None:
        super().__init__()
        self.event = event
        self._owner = owner

    def cancel(self) -> bool:
        owner = self._owner
        if owner is None:
            return super().cancel()
        withdrawn: bool = owner._withdraw(self)
        return withdrawn

    def result(self, timeout: Optional[float] = None) -> Any:
        self._refuse_waiting_on_own_worker()
        return super().result(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        self._refuse_waiting_on_own_worker()
        return super().exception(timeout)

    def _refuse_waiting_on_own_worker(self) -> None:
        """A handler waiting for an event of its own service would wait on itself:
        its worker is the only one that could ever resolve it."""
        owner = self._owner
        if owner is not None and not self.done() \
                and threading.current_thread() is owner._worker:
            raise errors.LifecycleError(
                "a callback of service %r cannot wait for an event of its own service; "
                "it would wait on itself" % owner.name, service=owner.name)

    def _cancel_withdrawn(self) -> bool:
        cancelled: bool = super().cancel()
        # Future.cancel() leaves waiters of wait()/as_completed() to the executor,
        # which would call this next; we are that executor.
        self.set_running_or_notify_cancel()
        return cancelled
