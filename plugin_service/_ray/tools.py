"""Tools run as Ray tasks: the host's pool thread waits for the task, so
timeouts, bulkhead and counters stay the host's, as for local tools."""
from __future__ import annotations

import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from .._context import ToolContext

if TYPE_CHECKING:  # pragma: no cover
    from .backend import RayBackend

_monotonic = time.monotonic


class _RemoteTool:
    """A tool run as a Ray task; the pool thread waits for it, so timeouts,
    bulkhead and counters are the host's, as for local tools."""

    def __init__(self, backend: "RayBackend", fn: Callable[[Any, ToolContext], Any]) -> None:
        self._backend = backend
        self._fn = fn
        self._task: Any = None

    def __call__(self, request: Any, ctx: ToolContext) -> Any:
        ray = self._backend._ray()
        if self._task is None:
            self._task = ray.remote(_run_tool).options(num_cpus=0)
        ref = self._task.remote(self._fn, request, ctx.remaining())
        ctx._forward_cancel(lambda: ray.cancel(ref))
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            raise _cause(exc) from None


def _cause(exc: Any) -> BaseException:
    """The plugin's own exception out of a RayTaskError (its traceback is Ray's)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _run_tool(fn: Callable[[Any, ToolContext], Any], request: Any,
              remaining: Optional[float]) -> Any:
    """In the task's process: ``ctx.cancelled`` turns True at the deadline.

    A timer cancels the context at the task's own deadline (a blocking
    ``ctx.wait()`` wakes). The host also ``ray.cancel``s the task then, which
    interrupts its main thread as if by SIGINT once it next runs Python code;
    while the tool runs, that cancels the context instead of raising
    ``KeyboardInterrupt`` wherever the tool happens to be.
    """
    if remaining is None:
        return fn(request, ToolContext(request, None))
    ctx = ToolContext(request, _monotonic() + remaining)
    timer = threading.Timer(remaining, ctx._cancel)
    timer.daemon = True
    timer.start()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: ctx._cancel()) \
        if main else None
    try:
        return fn(request, ctx)
    finally:
        timer.cancel()
        if main:
            signal.signal(signal.SIGINT, previous)

