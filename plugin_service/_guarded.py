"""Guarded reads of plugin-controlled objects.

A plugin's exception, its event or its callback is code we did not write: its
``__str__`` may raise, return a non-str or block, an attribute may be a property
that lies. Everything here never raises, returns bounded and redacted text, and
is called outside every lock of ours, so whatever the object does can only cost
the thread that asked.
"""
from __future__ import annotations

import traceback
from typing import Any, Optional

from ._redact import sanitize

__all__ = ["describe", "text_of", "type_name", "failure_log"]


def type_name(obj: Any) -> str:
    """The name of ``obj``'s class (a metaclass cannot make this raise)."""
    try:
        name = type(obj).__name__
    except BaseException:
        return "object"
    return name if type(name) is str else "object"


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
    """For a log line: where ``exc`` was raised (its frames, without the values
    any frame held) and its redacted description. Loguru's and logging's own
    tracebacks print the exception's text unredacted, so we never hand them one."""
    frames: Optional[str]
    try:
        lines = "".join(traceback.format_tb(exc.__traceback__)[-8:]).splitlines()
        frames = "\n".join(sanitize(line, 300) for line in lines)
    except BaseException:
        frames = None
    head = describe(exc, limit)
    if not frames:
        return head
    return "%s\nTraceback (most recent call last, redacted):\n%s" % (head, frames.rstrip())
