"""Exceptions that fight being described: ``__str__`` raising, returning a non-str
or blocking, a class name and attributes that raise.

What a tool or plugin raises is described (type name, message) for outcomes,
diagnostics and logs; these check that describing never raises, hangs or leaks.
"""
from __future__ import annotations

import threading
from typing import Any

from support.timing import LONG


class RaisingStrError(Exception):
    """An exception whose ``__str__`` raises ``error`` (any BaseException)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def __str__(self) -> str:
        raise self.error


class NonStrError(Exception):
    """An exception whose ``__str__`` returns an int."""

    def __str__(self) -> Any:
        return 42


class _LyingStr(str):
    """A str whose own conversions raise."""

    def __str__(self) -> str:
        raise RuntimeError("lying str")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("lying str")


class _LyingMeta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("no name for you")


class LyingError(Exception, metaclass=_LyingMeta):
    """An exception whose class name raises, whose every plain attribute raises,
    and whose ``__str__`` returns a str that raises when converted again."""

    def __str__(self) -> str:
        return _LyingStr("lies")

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__"):
            return super().__getattribute__(name)
        raise RuntimeError("no %s for you" % name)


class SlowStrError(Exception):
    """An exception whose ``__str__`` blocks until ``release`` is set (or ``LONG``)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def __str__(self) -> str:
        self.entered.set()
        self.release.wait(LONG)
        return "finally described"
