"""The tools part of ``PluginHost``: ``add_tool``, ``submit_tool`` and ``call_tool``."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Type, Union

from . import errors
from ._breaker import BreakerPolicy
from ._context import ToolContext
from ._kinds import classify
from ._plugin import ToolPlugin
from ._pool import ToolPool
from ._tools import Tool
from ._tracing.tools import TracedTool

if TYPE_CHECKING:  # pragma: no cover
    from ._backend import Backend
    from ._tracing import Tracing
    from ._watchdog import Watchdog

__all__ = ["HostTools"]


class HostTools:
    """What ``PluginHost`` offers for tools (a part of it); the host makes the
    pool and ``_tools``, closes them in ``close()`` and reports them in ``status()``."""

    if TYPE_CHECKING:  # pragma: no cover - set by PluginHost.__init__
        _lock: threading.Lock
        _tools: Dict[str, Tool]
        _pool: ToolPool
        _watchdog: Watchdog
        _backend: Backend
        _forked: bool
        _closed: bool
        _tracing: Optional[Tracing]

        def _forked_error(self) -> errors.HostForked: ...

    def add_tool(self, name: str,
                 tool: Union[ToolPlugin, Type[ToolPlugin], Callable[[Any, ToolContext], Any]],
                 *, timeout: Optional[float] = None, max_concurrency: Optional[int] = None,
                 remote: bool = False, breaker: Optional[BreakerPolicy] = None) -> None:
        """Register a tool: a ``ToolPlugin`` (instance, or class instantiated once) or
        any callable ``(request, ctx)``. ``timeout`` (seconds from submission) and
        ``max_concurrency`` (a bulkhead) are per tool; a call's timeout overrides it.

        With ``remote=True`` (Ray backend only) each call runs as a Ray task, with the
        same timeout, bulkhead and counters.

        With ``breaker`` the calls go through a circuit breaker: once it opened,
        calls fail fast with ``ToolUnavailable`` (counted ``rejected``) until one
        probe call may go (README: Circuit breaker).

        Raises ``ValueError`` for a duplicate or blank name, ``HostClosed`` after close.
        """
        if self._forked:
            raise self._forked_error()
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a tool name must be a non-blank string, got %r" % (name,))
        _, fn = classify(tool, "tool")
        if remote:
            fn = self._backend.remote_tool(fn)
        if self._tracing is None:
            entry = Tool(name, fn, timeout, max_concurrency, self._pool, self._watchdog,
                         breaker)
        else:
            entry = TracedTool(name, fn, timeout, max_concurrency, self._pool,
                               self._watchdog, breaker, tracing=self._tracing)
        with self._lock:
            if self._closed:
                raise errors.HostClosed("host is closed; cannot add tool %r" % name)
            if name in self._tools:
                raise ValueError("a tool named %r is already registered" % name)
            self._tools[name] = entry

    def submit_tool(self, name: str, request: Any, *,
                    timeout: Optional[float] = None) -> "Future[Any]":
        """Call tool ``name`` on the shared pool; returns a Future of its result.

        Raises ``ToolNotFound``, ``HostClosed`` and ``ToolBusy`` at once, on this
        thread; the future raises ``ToolFailed`` or ``ToolTimeout``, or is cancelled
        (``cancel()`` withdraws a call still waiting for a thread). The tool runs on
        a pool thread, never on a service worker; called from a pool thread (a tool
        calling a tool) it runs inline on that thread, so this returns once it has.
        """
        if self._forked:
            raise self._forked_error()
        if self._closed:
            raise errors.HostClosed("host is closed; tool %r not called" % (name,))
        try:
            tool = self._tools[name]
        except (KeyError, TypeError):
            raise errors.ToolNotFound(name) from None
        return tool.submit(request, timeout)

    def call_tool(self, name: str, request: Any, *, timeout: Optional[float] = None) -> Any:
        """Call tool ``name`` and wait for its result; raises like :meth:`submit_tool`,
        plus ``ToolFailed`` or ``ToolTimeout``."""
        return self.submit_tool(name, request, timeout=timeout).result()
