"""The checks of the numbers a caller configures: counts, timeouts, bounds.

Each refuses with ``ValueError("<name> must be <phrase>, got <value!r>")``. The
phrase is the caller's, so each option keeps the words its documentation uses
(``"an int >= 1 or None"``, ``"a number of seconds >= 0"``...). A bool is never
a number here, although Python counts it as an int.
"""
from __future__ import annotations

import math
from typing import Any, TypeVar

__all__ = ["positive_int", "non_negative"]

_T = TypeVar("_T")


def _refuse(name: str, phrase: str, value: Any) -> ValueError:
    return ValueError("%s must be %s, got %r" % (name, phrase, value))


def positive_int(name: str, value: _T, *, optional: bool = False,
                 phrase: str = "an int >= 1") -> _T:
    """``value`` if it is an int >= 1 (or None, when ``optional``); else
    ``ValueError`` naming ``name`` and ``phrase``."""
    if value is None and optional:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _refuse(name, phrase, value)
    return value


def non_negative(name: str, value: _T, *, optional: bool = True, number: bool = False,
                 allow_nan: bool = True, phrase: str = ">= 0 or None") -> _T:
    """``value`` if it is >= 0 (or None, when ``optional``); else ``ValueError``
    naming ``name`` and ``phrase``.

    With ``number`` it must also be an int or a float; without, it is only
    compared with 0, so something that cannot be raises that comparison's
    ``TypeError``. A float NaN, which compares with nothing, passes unless
    ``allow_nan`` is False.
    """
    if value is None and optional:
        return value
    if isinstance(value, bool) or (number and not isinstance(value, (int, float))):
        raise _refuse(name, phrase, value)
    if not allow_nan and isinstance(value, float) and math.isnan(value):  # a float NaN
        raise _refuse(name, phrase, value)
    compared: Any = value  # whatever it is: see above
    if compared < 0:
        raise _refuse(name, phrase, value)
    return value
