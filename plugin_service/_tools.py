"""Tool plugins: request-response calls on the host's shared executor.

A tool call never passes through a service queue. Each tool has a bulkhead
(``max_concurrency``): a call holds a slot from admission until its pool thread
has really returned, timed-out calls included, so a timeout can never let more
calls run at once than the limit allows. Deadlines count from submission and are
enforced by the host's watchdog, which resolves the caller's future at the
deadline and sets ``ctx.cancelled``.
"""
from __future__ import annotations

import datetime as _dt
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from loguru import logger

from . import errors
from ._context import ToolContext
from ._diagnostics import Diagnostic, DiagnosticKind, ToolCounters, ToolStatus
from ._future import GuardedFuture
from ._lifecycle import LifecycleState
from ._plugin import ToolPlugin
from ._redact import sanitize

__all__ = ["Tool", "as_tool_callable"]

_K = DiagnosticKind
_monotonic = time.monotonic
_UTC = _dt.timezone.utc


def as_tool_callable(tool: Any) -> Callable[[Any, ToolContext], Any]:
    """A ``(request, ctx)`` callable for a ToolPlugin instance or class, or a callable."""
    if isinstance(tool, type) and issubclass(tool, ToolPlugin):
        tool = tool()
    if isinstance(tool, ToolPlugin):
        if type(tool).invoke is ToolPlugin.invoke:
            raise TypeError("%s does not implement invoke" % type(tool).__name__)
        invoke: Callable[[Any, ToolContext], Any] = tool.invoke
        return invoke
    if callable(tool):
        return tool  # type: ignore[no-any-return]
    raise TypeError("a tool is a ToolPlugin or a callable (request, ctx), got %r" % (tool,))


def _check_timeout(value: Optional[float]) -> Optional[float]:
    if value is not None and (isinstance(value, bool) or value < 0):
        raise ValueError("timeout must be >= 0 or None, got %r" % (value,))
    return value


class _Call:
    """One admitted call: its future, context, and who decided its outcome."""

    __slots__ = ("future", "ctx", "request", "decided", "started", "work", "timer", "timeout")

    def __init__(self, request: Any, deadline: Optional[float],
                 timeout: Optional[float]) -> None:
        self.future: "Future[Any]" = GuardedFuture()
        self.ctx = ToolContext(request, deadline)
        self.request = request
        self.decided = False  # outcome recorded (result, error or timeout)
        self.started = False  # a pool thread picked it up
        self.work: "Optional[Future[None]]" = None
        self.timer: Any = None
        self.timeout = timeout


class Tool:
    """One registered tool: its callable, bulkhead, counters and last error."""

    def __init__(self, name: str, fn: Callable[[Any, ToolContext], Any],
                 timeout: Optional[float], max_concurrency: Optional[int],
                 executor: ThreadPoolExecutor, watchdog: Any) -> None:
        if max_concurrency is not None and (
                isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
                or max_concurrency < 1):
            raise ValueError("max_concurrency must be an int >= 1 or None, got %r"
                             % (max_concurrency,))
        self.name = name
        self._fn = fn
        self._timeout = _check_timeout(timeout)
        self._max_concurrency = max_concurrency
        self._executor = executor
        self._watchdog = watchdog
        self._log = logger.bind(tool=name)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._calls = self._succeeded = self._failed = 0
        self._timed_out = self._rejected = 0
        self._last_error: Optional[Diagnostic] = None
        self._pending: "set[_Call]" = set()  # admitted calls not yet returned from their thread

    # ------------------------------------------------------------ reading
    def status(self) -> ToolStatus:
        with self._lock:
            return ToolStatus(
                name=self.name,
                in_flight=self._in_flight,
                max_concurrency=self._max_concurrency,
                counters=ToolCounters(self._calls, self._succeeded, self._failed,
                                      self._timed_out, self._rejected),
                last_error=self._last_error,
            )

    def _note(self, kind: DiagnosticKind, message: str) -> Diagnostic:
        diagnostic = Diagnostic(kind, LifecycleState.RUNNING, sanitize(message),
                                _dt.datetime.now(_UTC), None)
        self._last_error = diagnostic
        self._log.warning("{}: {}", kind.value, diagnostic.message)
        return diagnostic

    # ------------------------------------------------------------- calling
    def submit(self, request: Any, timeout: Optional[float]) -> "Future[Any]":
        """Admit a call (or raise ``ToolBusy``) and hand it to the pool."""
        timeout = self._timeout if timeout is None else _check_timeout(timeout)
        deadline = None if timeout is None else _monotonic() + timeout
        call = _Call(request, deadline, timeout)
        with self._lock:
            limit = self._max_concurrency
            if limit is not None and self._in_flight >= limit:
                self._rejected += 1
                self._note(_K.TOOL_BUSY, "tool %r is busy: %d calls hold its %d slots"
                           % (self.name, self._in_flight, limit))
                raise errors.ToolBusy(limit, service=self.name)
            self._in_flight += 1
            self._calls += 1
            self._pending.add(call)
        try:
            call.work = self._executor.submit(self._run, call)
        except RuntimeError:  # the executor was shut down under us: the host closed
            self._abandon(call, errors.HostClosed("host is closed; tool %r not called"
                                                  % self.name))
            raise errors.HostClosed("host is closed; tool %r not called" % self.name) from None
        if deadline is not None:
            call.timer = self._watchdog.schedule(deadline, self._on_deadline, call)
        return call.future

    def _run(self, call: _Call) -> None:
        """On a pool thread: run the tool unless its call already timed out."""
        with self._lock:
            if call.decided:  # timed out while waiting for a thread: never runs
                self._release(call)
                return
            call.started = True
        try:
            value = self._fn(call.request, call.ctx)
            error: Optional[BaseException] = None
        except BaseException as exc:
            value, error = None, exc
        if call.timer is not None:
            call.timer.cancel()
        with self._lock:
            self._release(call)
            if call.decided:
                return  # the caller already has its ToolTimeout
            call.decided = True
            if error is None:
                self._succeeded += 1
            else:
                self._failed += 1
                self._note(_K.TOOL_FAILED, "tool %r raised %s: %s"
                           % (self.name, type(error).__name__, error))
        if error is None:
            call.future.set_result(value)
        else:
            failure = errors.ToolFailed("tool %r raised %s" % (
                self.name, sanitize("%s: %s" % (type(error).__name__, error))), service=self.name)
            failure.__cause__ = error
            call.future.set_exception(failure)

    def _release(self, call: _Call) -> None:
        """Give the call's bulkhead slot back (lock held)."""
        if call in self._pending:
            self._pending.discard(call)
            self._in_flight -= 1

    def _on_deadline(self, call: _Call) -> None:
        """On the watchdog: the call's deadline passed."""
        with self._lock:
            if call.decided:
                return
            call.decided = True
            call.ctx._cancel()
            self._timed_out += 1
            self._note(_K.TOOL_TIMEOUT, "tool %r did not answer within %.3gs%s" % (
                self.name, call.timeout or 0.0, "" if call.started else " (never started)"))
            if not call.started and call.work is not None and call.work.cancel():
                self._release(call)  # withdrawn from the pool's queue: it never runs
        call.future.set_exception(errors.ToolTimeout(
            "tool %r did not answer within %.3gs" % (self.name, call.timeout or 0.0),
            service=self.name, timeout=call.timeout))

    def _abandon(self, call: _Call, error: BaseException) -> None:
        with self._lock:
            self._release(call)
            if call.decided:
                return
            call.decided = True
        if call.timer is not None:
            call.timer.cancel()
        call.future.set_exception(error)

    def close(self) -> None:
        """Host closing: fail calls still waiting for a pool thread with HostClosed."""
        with self._lock:
            waiting = [c for c in self._pending if not c.started and not c.decided]
        for call in waiting:
            if call.work is not None and call.work.cancel():
                self._abandon(call, errors.HostClosed(
                    "host closed before tool %r was called" % self.name))
