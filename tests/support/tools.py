"""Tool doubles: plain callables ``(request, ctx)`` and ToolPlugin subclasses.

Every double that blocks waits on its own release: a :class:`Gate` never blocks
longer than ``HANG``, a :class:`Stuck` tool never longer than ``LONG``; the
``make_gate`` and ``make_stuck`` fixtures release theirs before any host closes.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, List

from plugin_service import ToolPlugin
from support.timing import HANG, LONG


class Gate:
    """A tool ``(request, ctx)`` that records its call, then blocks until released.

    ``entered`` and ``returned`` count calls; ``threads`` and ``contexts`` record
    where each call ran and what it was given. The call returns its request.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._released = threading.Event()
        self.entered = 0
        self.returned = 0
        self.threads: List[threading.Thread] = []
        self.contexts: List[Any] = []

    def __call__(self, request: Any, ctx: Any) -> Any:
        with self._changed:
            self.entered += 1
            self.threads.append(threading.current_thread())
            self.contexts.append(ctx)
            self._changed.notify_all()
        self._released.wait(HANG)
        with self._changed:
            self.returned += 1
            self._changed.notify_all()
        return request

    @property
    def is_released(self) -> bool:
        return self._released.is_set()

    def release(self) -> None:
        self._released.set()

    def wait_entered(self, count: int = 1) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.entered >= count, HANG)

    def wait_returned(self, count: int = 1) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.returned >= count, HANG)


class RecordingTool:
    """A tool that records the requests it ran and the thread, and echoes them."""

    def __init__(self) -> None:
        self.requests: List[Any] = []
        self.threads: List[threading.Thread] = []

    def __call__(self, request: Any, ctx: Any) -> Any:
        self.requests.append(request)
        self.threads.append(threading.current_thread())
        return request


class Upper(ToolPlugin):
    """A ToolPlugin subclass that does not call ``super().__init__()``."""

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix

    def invoke(self, request: Any, ctx: Any) -> Any:
        return str(request).upper() + self.suffix


class Boom(Exception):
    """What ``raising_tool`` raises."""


def raising_tool(message: str) -> Callable[[Any, Any], Any]:
    """A tool that raises ``Boom(message)``; the raised instances are kept on it."""
    raised: List[BaseException] = []

    def tool(request: Any, ctx: Any) -> Any:
        error = Boom(message)
        raised.append(error)
        raise error

    tool.raised = raised  # type: ignore[attr-defined]
    return tool


def raising(error: BaseException) -> Callable[[Any, Any], Any]:
    """A tool that raises ``error``."""

    def tool(request: Any, ctx: Any) -> Any:
        raise error

    return tool


class Stuck:
    """A tool that ignores ``ctx`` (a socket read without timeout) and blocks until
    ``release()`` (or ``LONG``); ``entered`` is set once it runs."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._released = threading.Event()
        self.contexts: List[Any] = []
        self.threads: List[threading.Thread] = []

    def __call__(self, request: Any, ctx: Any) -> Any:
        self.contexts.append(ctx)
        self.threads.append(threading.current_thread())
        self.entered.set()
        self._released.wait(LONG)
        return request

    def release(self) -> None:
        self._released.set()
