"""Where a handler is: the current stack of one thread, bounded and redacted.

Taken only when a status asks for it, from ``sys._current_frames()`` by the
thread's ident: nothing is recorded per event. A frame shows its file, line,
function and the text of its source line, redacted like every message
(``sanitize``: a ``password = "..."`` written in the source shows as ``***``);
never a frame's locals, so a payload or a secret held in a variable is never
shown.
"""
from __future__ import annotations

import linecache
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Protocol, Tuple

import attrs

from ._export import _export
from ._redact import sanitize

__all__ = ["HandlerStack", "STACK_FRAMES", "STACK_LINE"]

#: The innermost frames a ``HandlerStack`` keeps (the outer ones are counted).
STACK_FRAMES = 32
#: Characters of one frame's text at most (an ellipsis follows a cut one).
STACK_LINE = 240


@attrs.frozen
class HandlerStack:
    """Where a long-running handler is: ``ServiceStatus.handler_stack``.

    ``frames``: the handler thread's current stack, outermost first as in a
    traceback, each ``"path:line in function: source line"``; at most the
    innermost ``STACK_FRAMES`` (32) frames, each at most ``STACK_LINE`` (240)
    characters, redacted; no frame's locals. ``omitted``: outer frames left out.
    ``thread``: which thread (on Ray: which actor process). ``running_for``:
    seconds since the handler began, when known. ``unavailable``: why
    ``frames`` is empty (the actor did not answer, say); None when it is not.
    """

    thread: str
    frames: Tuple[str, ...] = ()
    omitted: int = 0
    running_for: Optional[float] = None
    unavailable: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """A dict of plain JSON types; never raises."""
        return _export(self)


class StackAnswer(Protocol):
    """A stack being fetched (from another process, say): ``wait`` for it."""

    def wait(self, deadline: Optional[float]) -> HandlerStack:
        """The stack, or one that says why it is ``unavailable`` by ``deadline``
        (a ``time.monotonic()`` value; None: the answer's own bound)."""


class Ready:
    """A stack taken already (a thread of this process)."""

    __slots__ = ("stack",)

    def __init__(self, stack: HandlerStack) -> None:
        self.stack = stack

    def wait(self, deadline: Optional[float]) -> HandlerStack:
        return self.stack


def _frame_text(filename: str, lineno: int, function: str) -> str:
    line = linecache.getline(filename, lineno).strip()
    text = "%s:%d in %s" % (filename, lineno, function)
    return sanitize(text + ": " + line if line else text, STACK_LINE)


def frames_of(frame: Any) -> Tuple[Tuple[str, ...], int]:
    """The text of ``frame`` and its callers, innermost ``STACK_FRAMES`` kept,
    outermost first; and how many outer frames were left out."""
    found: List[Tuple[str, int, str]] = []
    omitted = 0
    while frame is not None:
        if len(found) < STACK_FRAMES:
            code = frame.f_code
            found.append((code.co_filename, frame.f_lineno or 0,
                          getattr(code, "co_qualname", code.co_name)))
        else:
            omitted += 1
        frame = frame.f_back
    # Source lines are read once the walk is done: linecache may read files.
    return tuple(_frame_text(*where) for where in reversed(found)), omitted


def thread_stack(ident: Optional[int], name: str) -> HandlerStack:
    """The current stack of this process's thread ``ident`` (called ``name``);
    never raises."""
    if ident is None:
        return HandlerStack(name, unavailable="the thread has not started")
    try:
        frame = sys._current_frames().get(ident)
        if frame is None:
            return HandlerStack(name, unavailable="the thread is not running")
        try:
            frames, omitted = frames_of(frame)
        finally:
            del frame  # a frame keeps its locals alive: drop it at once
        return HandlerStack(name, frames, omitted)
    except Exception as exc:  # pragma: no cover - defensive: a status never raises
        return HandlerStack(name, unavailable="its stack could not be read: %s"
                            % sanitize(exc, 200))


def stack_of(thread: Optional[threading.Thread]) -> HandlerStack:
    """``thread_stack`` of a ``threading.Thread`` of this process."""
    if thread is None:
        return HandlerStack("worker", unavailable="the service has no worker thread")
    return thread_stack(thread.ident, sanitize(thread.name, 100))


def remaining(deadline: Optional[float], bound: float) -> float:
    """Seconds until ``deadline``, or ``bound`` without one; never negative."""
    if deadline is None:
        return bound
    return max(0.0, deadline - time.monotonic())
