"""The context a plugin callback gets: its deadline and a cooperative cancel flag."""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Optional

__all__ = ["CallContext", "DispatchContext", "ToolContext"]

_monotonic = time.monotonic
_event_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    # A thread holding it at a fork does not exist in the child: make a fresh one.
    global _event_lock
    _event_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


class CallContext:
    """Deadline and cancellation of one call, shared by dispatch and tool contexts.

    The runtime sets ``cancelled`` at the deadline (or on stop); a plugin that
    checks it, or sleeps through :meth:`wait`, can return early.
    """

    __slots__ = ("deadline", "_cancelled", "_wakeup", "_on_cancel")

    def __init__(self, deadline: Optional[float] = None) -> None:
        self.deadline = deadline
        self._cancelled = False
        self._wakeup: Optional[threading.Event] = None
        self._on_cancel: Optional[Callable[[], None]] = None

    @property
    def cancelled(self) -> bool:
        """True once the runtime has given up on this call."""
        return self._cancelled

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (never negative), or None without one."""
        if self.deadline is None:
            return None
        left = self.deadline - _monotonic()
        return left if left > 0.0 else 0.0

    def wait(self, seconds: Optional[float] = None) -> bool:
        """Sleep up to ``seconds`` (None: until cancelled); True as soon as cancelled."""
        if self._cancelled:
            return True
        wakeup = self._wakeup
        if wakeup is None:
            # The event is made only when someone waits: most calls never do.
            with _event_lock:
                if self._wakeup is None:
                    self._wakeup = threading.Event()
                wakeup = self._wakeup
            if self._cancelled:
                return True
        return wakeup.wait(seconds)

    def _cancel(self) -> None:
        self._cancelled = True
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.set()
        hook = self._on_cancel
        if hook is not None:  # forwards cancellation, e.g. to a remote plugin
            try:
                hook()
            except Exception:
                pass

    def _forward_cancel(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` on cancellation (at once if already cancelled)."""
        self._on_cancel = hook
        if self._cancelled:
            hook()


class DispatchContext(CallContext):
    """What ``handle_ingress(event, ctx)`` gets: the ``event``, ``cancelled``,
    ``deadline`` (monotonic seconds or None), ``remaining()`` and ``wait(seconds)``."""

    __slots__ = ("event",)

    def __init__(self, event: Any, deadline: Optional[float] = None) -> None:
        self.event = event
        self.deadline = deadline
        self._cancelled = False
        self._wakeup = None
        self._on_cancel = None


class ToolContext(CallContext):
    """What a tool's ``invoke(request, ctx)`` gets: the ``request`` and the same
    deadline and cancellation API as :class:`DispatchContext`."""

    __slots__ = ("request",)

    def __init__(self, request: Any, deadline: Optional[float] = None) -> None:
        self.request = request
        self.deadline = deadline
        self._cancelled = False
        self._wakeup = None
        self._on_cancel = None
