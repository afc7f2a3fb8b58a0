"""How a host's tool calls end when it closes: the bound each running call gets,
a second signal bringing it forward, and the calls abandoned past it."""
from __future__ import annotations

import time
from typing import List, Optional

from ._pool import ToolPool
from ._tools import Tool


class ToolClosing:
    """The tool side of ``PluginHost.close()`` and ``_hurry()``."""

    __slots__ = ("_pool", "_grace", "_bound", "_hurried_until")

    def __init__(self, pool: ToolPool, grace: Optional[float]) -> None:
        self._pool = pool
        self._grace = grace  # tool_cancel_grace
        self._bound: Optional[float] = None
        self._hurried_until: Optional[float] = None  # set by hurry()

    def begin(self, tools: List[Tool]) -> None:
        """First step of close for tools: no more calls, waiting ones dropped,
        running ones without a deadline cancelled; note the monotonic time by
        which every running call's bound ends (None: no bound)."""
        now = time.monotonic()
        bound: Optional[float] = now
        for tool in tools:
            until = tool.close_begin(now, self._grace)
            bound = None if until is None or bound is None else max(bound, until)
        self._bound = bound

    def hurry(self, tools: List[Tool]) -> None:
        """A second signal: running calls are cancelled now and get the grace from
        now (none if it is None: a forced stop waits for no tool)."""
        until = time.monotonic() + (self._grace or 0.0)
        previous = self._hurried_until
        self._hurried_until = until if previous is None else min(previous, until)
        for tool in tools:
            tool.cancel_running()

    def end(self, tools: List[Tool], deadline: Optional[float]) -> None:
        """Last step of close for tools (the watchdog still runs, so deadlines keep
        firing): join the pool's threads until the calls' bound or ``deadline``,
        whichever is first, then abandon the calls still running."""
        bound = self._bound
        if bound is None or (deadline is not None and deadline < bound):
            bound = deadline

        def calls_until() -> Optional[float]:
            hurried = self._hurried_until  # a second signal brings it forward
            if hurried is not None and (bound is None or hurried < bound):
                return hurried
            return bound

        self._pool.shutdown(calls_until, deadline)
        for tool in tools:
            tool.abandon_running()
