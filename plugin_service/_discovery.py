"""Plugins found through entry points (the ``importlib.metadata`` convention)."""
from __future__ import annotations

import importlib.metadata as _metadata
from typing import Any, Dict, Iterable, Tuple

import attrs

from . import errors

__all__ = ["LoadReport", "entry_points"]

DEFAULT_GROUP = "plugin_service.plugins"


@attrs.frozen
class LoadReport:
    """What ``PluginHost.load_entry_points`` did: ``loaded`` names, in order, and
    ``errors``, a ``PluginLoadError`` per broken entry point keyed by its name."""

    loaded: Tuple[str, ...] = ()
    errors: Dict[str, errors.PluginLoadError] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """True when every entry point loaded."""
        return not self.errors

    def __repr__(self) -> str:
        broken = ", ".join("%s (%s)" % (name, err.reason) for name, err in self.errors.items())
        return "LoadReport(loaded=%r, errors=[%s])" % (list(self.loaded), broken)


def entry_points(group: str) -> Iterable[Any]:
    """The entry points of ``group`` across installed distributions, deduplicated."""
    found = _metadata.entry_points()
    if hasattr(found, "select"):
        selected = found.select(group=group)
    else:  # Python 3.9: a dict of group -> entry points
        selected = found.get(group, ())  # type: ignore[arg-type]
    seen = set()
    for entry in selected:
        if entry.name not in seen:
            seen.add(entry.name)
            yield entry
