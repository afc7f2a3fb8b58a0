"""An event payload that pickles anywhere and cannot be unpickled (as an object
of a class the other process cannot import). Importable by Ray workers."""
from __future__ import annotations

from typing import Any, Tuple


def _refuse() -> Any:
    raise RuntimeError("this object cannot be unpickled here")


class Unloadable:
    """Pickles to a call of ``_refuse``: unpickling it raises."""

    def __reduce__(self) -> Tuple[Any, Tuple[()]]:
        return _refuse, ()
