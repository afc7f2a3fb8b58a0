"""The future a submit returns."""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any

__all__ = ["DispatchFuture"]


class DispatchFuture(Future):
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
        return owner._withdraw(self)

    def _cancel_withdrawn(self) -> bool:
        return super().cancel()
