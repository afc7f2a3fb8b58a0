"""Tool plugins: request-response calls on the host's shared tool pool.

A tool call never passes through a service queue. Each tool has a bulkhead
(``max_concurrency``): a call holds a slot from admission until its pool thread
has really returned, timed-out and abandoned calls included, so a timeout can
never let more calls run at once than the limit allows. Deadlines count from
submission and are enforced by the host's watchdog, which resolves the caller's
future at the deadline and sets ``ctx.cancelled``.

Every admitted call ends in exactly one counted outcome (succeeded, failed,
timed out, dropped), recorded under the tool's lock before its future resolves.
Whatever touches a plugin-controlled object (the tool's exception: its class
name, its ``__str__``) is computed by ``_guarded.describe`` outside the lock, and
the future is resolved in a ``finally`` whatever that meets.
"""
from __future__ import annotations

import datetime as _dt
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, List, Optional

from loguru import logger

from . import errors
from ._breaker import Breaker, BreakerPolicy
from ._checks import non_negative, positive_int
from ._context import ToolContext
from ._diagnostics import Diagnostic, DiagnosticKind, ToolCounters, ToolStatus
from ._guarded import describe
from ._latency import LatencyRecorder
from ._lifecycle import LifecycleState
from ._logs import log_traceback
from ._pool import ToolPool
from ._redact import sanitize
from ._tool_future import ToolFuture

__all__ = ["Tool", "check_grace"]

_K = DiagnosticKind
_monotonic = time.monotonic
_get_ident = threading.get_ident
_UTC = _dt.timezone.utc


def check_grace(value: Any) -> Optional[float]:
    """``tool_cancel_grace``: a number >= 0 (not NaN) or None, else ``ValueError``."""
    grace = non_negative("tool_cancel_grace", value, number=True, allow_nan=False,
                         phrase="a number of seconds >= 0 or None")
    return None if grace is None else float(grace)


class _Call:
    """One admitted call: its future and context, and who decided its outcome.

    ``decided``: its outcome is counted (the future resolves right after);
    ``started``: a thread entered the tool; it holds its slot while in
    ``Tool._pending``. ``probe``: the one call a half-open breaker let through.
    """

    __slots__ = ("tool", "future", "ctx", "request", "decided", "started", "timer",
                 "timeout", "thread_id", "admitted", "probe")

    def __init__(self, tool: "Tool", request: Any, deadline: Optional[float],
                 timeout: Optional[float], admitted: float) -> None:
        self.tool = tool
        self.future = tool._future_type(self)
        self.ctx = ToolContext(request, deadline)
        self.request = request
        self.decided = False
        self.started = False
        self.timer: Any = None
        self.timeout = timeout
        self.thread_id = 0  # the thread running it, once started
        self.admitted = admitted  # when submit_tool took it (its call time starts)
        self.probe = False

    def run(self) -> None:
        """On a pool thread (the pool's unit of work); never raises."""
        self.tool._run(self)


class Tool:
    """One registered tool: its callable, bulkhead, counters and last error."""

    #: What a call's future is (a traced host's ``TracedTool`` makes traced ones).
    _future_type = ToolFuture

    def __init__(self, name: str, fn: Callable[[Any, ToolContext], Any],
                 timeout: Optional[float], max_concurrency: Optional[int],
                 pool: ToolPool, watchdog: Any, breaker: Optional[BreakerPolicy] = None
                 ) -> None:
        positive_int("max_concurrency", max_concurrency, optional=True,
                     phrase="an int >= 1 or None")
        self.name = name
        self._fn = fn
        self._timeout = non_negative("timeout", timeout)
        self._max_concurrency = max_concurrency
        self._pool = pool
        self._watchdog = watchdog
        self._log = logger.bind(tool=name)
        # _lock guards every field below. Every undecided call is in _pending
        # (a call leaves it only once decided, or in the same locked step), so
        # in_flight, the admitted calls whose outcome is not decided yet, is the
        # undecided part of _pending, and at every moment
        # calls == succeeded + failed + timed_out + dropped + in_flight, and
        # len(_pending) (the slots held) == in_flight + the decided calls whose
        # thread is still inside the tool (overdue).
        self._lock = threading.Lock()
        self._forked_from = 0  # in a forked child: the pid of the host's process
        self._calls = self._succeeded = self._failed = 0
        self._timed_out = self._rejected = self._dropped = 0
        self._abandoned = 0
        self._last_error: Optional[Diagnostic] = None
        self._pending: "set[_Call]" = set()  # the calls holding a bulkhead slot
        self._call_times = LatencyRecorder()  # admission -> outcome
        self._closing = False
        if breaker is not None and not isinstance(breaker, BreakerPolicy):
            raise TypeError("breaker must be a BreakerPolicy or None, got %r" % (breaker,))
        # Judged by each call's outcome, under _lock (README: Circuit breaker).
        self._breaker = None if breaker is None else Breaker(breaker, self._breaker_changed)

    # ------------------------------------------------------------ reading
    def status(self) -> ToolStatus:
        with self._lock:
            overdue = sum(1 for call in self._pending if call.decided)
            return ToolStatus(
                name=self.name,
                in_flight=len(self._pending) - overdue,
                max_concurrency=self._max_concurrency,
                counters=ToolCounters(self._calls, self._succeeded, self._failed,
                                      self._timed_out, self._rejected, self._dropped),
                last_error=self._last_error,
                overdue=overdue,
                abandoned=self._abandoned,
                call_time=self._call_times.snapshot(),
                breaker=None if self._breaker is None else self._breaker.status(),
            )

    def _breaker_changed(self, message: str) -> None:
        """The breaker moved (lock held): logged, like a service's transition."""
        self._log.info("tool {}: {}", str.__repr__(self.name), message)

    def _note(self, kind: DiagnosticKind, message: str) -> None:
        """Record ``message`` (ours, or already described and redacted) as last_error
        (lock held)."""
        diagnostic = Diagnostic(kind, LifecycleState.RUNNING, sanitize(message),
                                _dt.datetime.now(_UTC), None)
        self._last_error = diagnostic
        self._log.warning("{}: {}", kind.value, diagnostic.message)

    def _decide(self, call: _Call) -> None:
        """The call's outcome is being counted now (lock held; one caller wins)."""
        call.decided = True
        call.future._call = None

    def _release(self, call: _Call) -> None:
        """Give the call's bulkhead slot back (lock held)."""
        if call in self._pending:
            self._pending.discard(call)

    # ------------------------------------------------------------- calling
    def submit(self, request: Any, timeout: Optional[float]) -> "Future[Any]":
        """Admit a call (or raise ``ToolBusy``, ``HostClosed``) and hand it to the pool.

        From one of the pool's own threads (a tool calling a tool) the call runs
        inline on that thread instead, admitted, counted and timed like any other:
        queued behind a full pool, the caller would wait on itself.
        """
        timeout = self._timeout if timeout is None else non_negative("timeout", timeout)
        now = _monotonic()
        deadline = None if timeout is None else now + timeout
        call = _Call(self, request, deadline, timeout, now)
        with self._lock:
            if self._closing:
                raise errors.HostClosed("host is closed; tool %r not called" % self.name)
            limit = self._max_concurrency
            if limit is not None and len(self._pending) >= limit:
                self._rejected += 1
                self._note(_K.TOOL_BUSY, "tool %r is busy: %d calls hold its %d slots"
                           % (self.name, len(self._pending), limit))
                raise errors.ToolBusy(limit, service=self.name)
            if self._breaker is not None:
                self._pass_breaker(call)
            self._calls += 1
            self._pending.add(call)
        if deadline is not None:
            call.timer = self._watchdog.schedule(deadline, self._on_deadline, call)
        pool = self._pool
        if pool.on_pool_thread():
            self._run(call)
        elif not pool.submit(call):  # the pool was shut down under us: the host closed
            self._drop(call, errors.HostClosed("host is closed; tool %r not called"
                                               % self.name))
            raise errors.HostClosed("host is closed; tool %r not called" % self.name)
        return call.future

    def _pass_breaker(self, call: _Call) -> None:
        """Let ``call`` through the breaker or refuse it, ``ToolUnavailable``
        (lock held; counted rejected, not in ``calls``)."""
        breaker = self._breaker
        assert breaker is not None
        probe = breaker.admit()
        if probe is None:
            self._rejected += 1
            next_probe_at = breaker.status().next_probe_at
            self._note(_K.TOOL_UNAVAILABLE, "tool %r is unavailable: its breaker is %s"
                       % (self.name, breaker.state.value))
            raise errors.ToolUnavailable(self.name, next_probe_at)
        call.probe = probe

    def _run(self, call: _Call) -> None:
        """On a pool thread: run the tool unless its call was already decided
        (withdrawn, or timed out while waiting for a thread). Never raises."""
        with self._lock:
            if call.decided:  # its slot was released when it was decided
                return
            call.started = True
            call.thread_id = _get_ident()
        call.future._mark_running()
        value: Any = None
        error: Optional[BaseException] = None
        try:
            value = self._fn(call.request, call.ctx)
        except BaseException as exc:
            error = exc
        text: Optional[str] = None
        try:
            if error is not None:
                text = describe(error)  # plugin code: outside the lock, maybe slow
                log_traceback(self._log, "tool %r raised %s" % (self.name, text), error)
        finally:
            self._finish(call, value, error, text)

    def _finish(self, call: _Call, value: Any, error: Optional[BaseException],
                text: Optional[str]) -> None:
        """The thread left the tool: free the slot; count and resolve the outcome,
        unless the watchdog or close() already did."""
        with self._lock:
            self._release(call)
            if call.decided:
                return  # the caller already has its ToolTimeout
            self._decide(call)
            self._call_times.observe(_monotonic() - call.admitted)
            breaker = self._breaker
            if error is None:
                self._succeeded += 1
                if breaker is not None:
                    breaker.succeeded(call.probe)
            else:
                self._failed += 1
                if breaker is not None:
                    breaker.failed(call.probe)
                if text is None:
                    text = "<an exception that could not be described>"
                self._note(_K.TOOL_FAILED, "tool %r raised %s" % (self.name, text))
        if call.timer is not None:
            call.timer.cancel()
        if error is None:
            call.future.set_result(value)
        else:
            failure = errors.ToolFailed("tool %r raised %s" % (self.name, text),
                                        service=self.name)
            failure.__cause__ = error
            call.future.set_exception(failure)

    def _on_deadline(self, call: _Call) -> None:
        """On the watchdog: the call's deadline passed."""
        with self._lock:
            if call.decided:
                return
            self._decide(call)
            call.ctx._cancel()
            self._timed_out += 1
            self._call_times.observe(_monotonic() - call.admitted)
            self._note(_K.TOOL_TIMEOUT, "tool %r did not answer within %.3gs%s" % (
                self.name, call.timeout or 0.0, "" if call.started else " (never started)"))
            if not call.started:
                self._release(call)  # the pool skips a decided call: it never runs
            if self._breaker is not None:  # a call that never ran says nothing of the tool
                if call.started:
                    self._breaker.failed(call.probe)
                else:
                    self._breaker.unjudged(call.probe)
        call.future.set_exception(errors.ToolTimeout(
            "tool %r did not answer within %.3gs" % (self.name, call.timeout or 0.0),
            service=self.name, timeout=call.timeout))

    def _withdraw(self, call: _Call) -> bool:
        """``future.cancel()``: withdraw a call still waiting for a thread."""
        with self._lock:
            if call.decided or call.started:
                return call.future.cancelled()  # True again for a withdrawn call
            call.future._mark_withdrawn()  # first: _decide lets cancel() skip the lock
            self._decide(call)
            self._dropped += 1
            self._release(call)
            if self._breaker is not None:
                self._breaker.unjudged(call.probe)
        if call.timer is not None:
            call.timer.cancel()
        call.future._announce_withdrawn()
        return True

    def _drop(self, call: _Call, error: BaseException) -> bool:
        """Withdraw a call that has not started, failing it with ``error``."""
        with self._lock:
            if call.decided or call.started:
                return False
            self._decide(call)
            self._dropped += 1
            self._release(call)
            if self._breaker is not None:
                self._breaker.unjudged(call.probe)
        if call.timer is not None:
            call.timer.cancel()
        call.future.set_exception(error)
        return True

    # ------------------------------------------------------------- closing
    def close_begin(self, now: float, grace: Optional[float]) -> Optional[float]:
        """Host closing: take no more calls, drop those still waiting for a thread
        (``HostClosed``, counted dropped) and cancel running calls without a
        deadline. Returns when the last running call's bound ends (its deadline,
        or ``now``, plus ``grace``); ``now`` with none running; None without bound.
        """
        with self._lock:  # one step, so no waiting call can start meanwhile
            self._closing = True
            waiting = [c for c in self._pending if not c.started and not c.decided]
            running = [c for c in self._pending if c.started]
            for call in waiting:
                self._decide(call)
                self._dropped += 1
                self._release(call)
                if self._breaker is not None:
                    self._breaker.unjudged(call.probe)
        for call in waiting:
            if call.timer is not None:
                call.timer.cancel()
            call.future.set_exception(errors.HostClosed(
                "host closed before tool %r was called" % self.name))
        bound: Optional[float] = now
        for call in running:
            deadline = call.ctx.deadline
            if deadline is None:
                call.ctx._cancel()
            if grace is None:
                bound = None
            elif bound is not None:
                bound = max(bound, (now if deadline is None else deadline) + grace)
        return bound

    def cancel_running(self) -> None:
        """A forced stop (a second signal): every running call's ``ctx.cancelled``
        turns True now."""
        with self._lock:
            running = [c for c in self._pending if c.started]
        for call in running:
            call.ctx._cancel()

    def abandon_running(self) -> int:
        """Host closed: calls still inside the tool are abandoned (they keep their
        slot until their thread returns, if ever). One still undecided counts as
        timed out and its future raises ``ToolTimeout``. Returns how many.

        Calls on the calling thread (a tool that called ``close()``) are not: they
        are about to return to it."""
        me = _get_ident()
        with self._lock:
            running = [c for c in self._pending if c.started and c.thread_id != me]
            self._abandoned += len(running)
            undecided: List[_Call] = []
            now = _monotonic()
            for call in running:
                if not call.decided:
                    self._decide(call)
                    self._timed_out += 1
                    self._call_times.observe(now - call.admitted)
                    undecided.append(call)
            if undecided:
                self._note(_K.TOOL_TIMEOUT, "tool %r: %d calls still running when the "
                           "host closed were abandoned" % (self.name, len(undecided)))
        for call in running:
            call.ctx._cancel()
        for call in undecided:
            if call.timer is not None:
                call.timer.cancel()
            call.future.set_exception(errors.ToolTimeout(
                "tool %r was still running when the host closed; abandoned" % self.name,
                service=self.name, timeout=call.timeout))
        return len(running)
