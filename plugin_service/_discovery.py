"""Plugins found through entry points (the ``importlib.metadata`` convention)."""
from __future__ import annotations

import importlib.metadata as _metadata
from typing import Any, Callable, Dict, Iterable, List, Tuple

import attrs
from loguru import logger

from . import errors
from ._guarded import describe
from ._kinds import Kind, classify
from ._redact import sanitize

__all__ = ["LoadReport", "entry_points", "load_entry_points", "load_error"]

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
        selected = found.get(group, ())  # type: ignore[arg-type, unused-ignore]
    seen = set()
    for entry in selected:
        if entry.name not in seen:
            seen.add(entry.name)
            yield entry


def load_error(name: str, exc: BaseException, reason: str = "") -> errors.PluginLoadError:
    """The report of entry point ``name`` that ``exc`` broke (its cause)."""
    error = errors.PluginLoadError(name, reason or describe(exc))
    error.__cause__ = exc
    return error


def load_entry_points(group: str, register: Callable[[str, Kind, Any], None]) -> LoadReport:
    """Load every entry point of ``group`` and hand it to ``register`` (name, kind,
    plugin); a broken one (it cannot be imported, is no plugin, or ``register``
    refused it) is reported, not raised, except ``HostClosed``."""
    loaded: List[str] = []
    broken: Dict[str, errors.PluginLoadError] = {}
    for entry in entry_points(group):
        name = entry.name
        try:
            obj = entry.load()
        except Exception as exc:
            broken[name] = load_error(name, exc, "cannot import %s: %s" % (
                entry.value, describe(exc)))
            continue
        try:
            kind, plugin = classify(obj)
            register(name, kind, plugin)
        except errors.HostClosed:
            raise
        except Exception as exc:
            broken[name] = load_error(name, exc)
            continue
        loaded.append(name)
    for name, error in broken.items():
        logger.warning("entry point {} not loaded: {}", sanitize(name, 128),
                       sanitize(error.reason))
    return LoadReport(tuple(loaded), broken)
