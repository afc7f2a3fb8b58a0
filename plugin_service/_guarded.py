"""Guarded reads of plugin-controlled objects.

A plugin's exception, its event or its callback is code we did not write: its
``__str__`` may raise, return a non-str or block, an attribute may be a property
that lies. Everything here never raises, returns bounded and redacted text, and
is called outside every lock of ours, so whatever the object does can only cost
the thread that asked.
"""
from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any, Optional

from ._redact import sanitize

__all__ = ["describe", "text_of", "type_name", "failure_log", "traceback_text"]

#: What ``traceback_text`` shows of a long traceback: the innermost frames of
#: each exception (where a plugin raised), and the newest exceptions of a chain.
_FRAMES_KEPT = 32
_CHAIN_KEPT = 5
_CAUSE = "  The above exception was the direct cause of the following exception:"
_CONTEXT = "  During handling of the above exception, another exception occurred:"


def type_name(obj: Any) -> str:
    """The name of ``obj``'s class (a metaclass cannot make this raise), on one
    line: a class may be named anything, newlines included."""
    try:
        name = type(obj).__name__
    except BaseException:
        return "object"
    if type(name) is not str:
        return "object"
    return name if name.isprintable() else sanitize(name, 128)


def text_of(obj: Any, limit: int = 512) -> str:
    """``str(obj)``, redacted and bounded; a placeholder if it raises or is no str."""
    try:
        text = str(obj)
    except BaseException:  # even KeyboardInterrupt from a hostile __str__ stops here
        return "<unprintable %s>" % type_name(obj)
    if type(text) is not str:
        return "<unprintable %s>" % type_name(obj)
    return sanitize(text, limit)


def describe(exc: Any, limit: int = 512) -> str:
    """``"TypeName: message"`` (or ``"TypeName"``) for a plugin's exception."""
    text = text_of(exc, limit)
    return "%s: %s" % (type_name(exc), text) if text else type_name(exc)


def failure_log(exc: BaseException, limit: int = 2048) -> str:
    """For a log line: ``exc``'s redacted description, then where it was raised
    (``traceback_text``: its innermost frames, without the values any frame
    held). Loguru's and logging's own tracebacks print the exception's text
    unredacted, so we never hand them one."""
    return "%s\n%s" % (describe(exc, limit), traceback_text(exc, frames=8))


def traceback_text(exc: BaseException, frames: int = _FRAMES_KEPT) -> str:
    """``exc``'s traceback as Python prints it, causes and contexts first, each
    line indented by two spaces more than Python's, redacted: each exception as
    ``describe`` gives it, each frame's file, function and source line through
    ``sanitize``, and never a value a frame held (nothing reads ``f_locals``).

    Every line is indented and none holds a control character, so a log reader
    can never take one for a record of its own. Up to ``frames`` innermost
    frames of each exception and five exceptions of a chain are shown. It reads
    the plugin's objects (``__str__``, ``__cause__``): call it outside every lock.
    """
    try:
        chain = _chain(exc)
        lines = [] if len(chain) < _CHAIN_KEPT else ["  (older exceptions of the chain not shown)"]
        for link, item in reversed(chain):
            _add_traceback(lines, item, frames)
            if link:
                lines.append(link)
        return "\n".join(lines)
    except BaseException:  # even KeyboardInterrupt from a hostile __cause__ stops here
        return "  " + describe(exc, 2048)


def _chain(exc: BaseException) -> "list[tuple[Optional[str], BaseException]]":
    """``exc`` and the exceptions it was raised from or during, newest first, each
    with how it led to the one before it in the list."""
    chain: "list[tuple[Optional[str], BaseException]]" = []
    seen = set()
    link: Optional[str] = None
    item: Any = exc
    while len(chain) < _CHAIN_KEPT and issubclass(type(item), BaseException) \
            and id(item) not in seen:
        seen.add(id(item))
        chain.append((link, item))
        if item.__cause__ is not None:
            item, link = item.__cause__, _CAUSE
        elif not item.__suppress_context__:
            item, link = item.__context__, _CONTEXT
        else:
            break
    return chain


def _add_traceback(lines: "list[str]", exc: BaseException, kept: int) -> None:
    """One exception's block: its innermost ``kept`` frames, then its description."""
    tb = exc.__traceback__
    if tb is not None:
        lines.append("  Traceback (most recent call last, redacted):")
        depth = 0
        walk: Optional[TracebackType] = tb
        while walk is not None:
            depth, walk = depth + 1, walk.tb_next
        if depth > kept:
            lines.append("    ... %d outer frames not shown" % (depth - kept))
        _add_frames(lines, traceback.extract_tb(tb, limit=-kept))
    lines.append("  " + describe(exc, 2048))


def _add_frames(lines: "list[str]", frames: "traceback.StackSummary") -> None:
    """Each frame's place and source line, redacted field by field (a file or
    function name can hold a newline); a recursion shows three of its frames."""
    previous, repeats = None, 0
    for frame in frames:
        where = (frame.filename, frame.lineno, frame.name)
        if where == previous:
            repeats += 1
            if repeats >= 3:
                continue
        else:
            if repeats >= 3:
                lines.append("    [the frame above repeated %d more times]" % (repeats - 2))
            previous, repeats = where, 0
        lines.append('    File "%s", line %s, in %s' % (
            sanitize(frame.filename, 200), frame.lineno, sanitize(frame.name, 100)))
        if frame.line:
            lines.append("      " + sanitize(frame.line.strip(), 200))
    if repeats >= 3:
        lines.append("    [the frame above repeated %d more times]" % (repeats - 2))
