"""The type variables of the library's generic classes.

``ResultT``, what a future resolves to, defaults to ``Any`` (PEP 696): a bare
``DispatchFuture`` or ``ServiceHandle`` in a user's annotation means
``DispatchFuture[Any]``, as before they were generic, so ``mypy --strict`` does
not ask for a type argument. Only type checkers see the default (``typing``'s
``TypeVar`` takes one from Python 3.13 on, and the runtime needs nothing beyond
attrs, tenacity and loguru): mypy and pyright ship ``typing_extensions``' stubs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    ResultT = TypeVar("ResultT", default=Any)
else:
    from typing import TypeVar

    ResultT = TypeVar("ResultT")

#: What a plugin's handler returns (a protocol's return: covariant).
ResultT_co = TypeVar("ResultT_co", covariant=True)

__all__ = ["ResultT", "ResultT_co"]
