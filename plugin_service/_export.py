"""Exports: any status value as plain JSON types, redacted and bounded; never raises."""
from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Mapping
from typing import Any, Dict, List, Set

import attrs

from ._redact import REDACTED, sanitize, secret_key

__all__ = ["jsonable"]

# How much of one value from a plugin or a submitter (a payload, a plugin's
# status) an export walks at most, so a huge, deep or cyclic one is exported
# quickly. The host's own structure (services, diagnostics) is bounded already.
_MAX_DEPTH = 12
_MAX_ITEMS = 200  # per container
_MAX_NODES = 2000  # per value
_MAX_TEXT = 1000  # characters of one string
# attrs field metadata: a mapping keyed by names (services, tools), not by data keys;
# and a field holding a value from a plugin or submitter, walked within the bounds.
_NAMES = "plugin_service.names"
_DATA = "plugin_service.data"
_CUT = "<truncated>"


def jsonable(value: Any, *, redact: bool = True) -> Any:
    """Turn a status value into plain JSON types (enums by value, datetimes as ISO 8601).

    Never raises (whatever ``__repr__``, ``__str__``, iteration or ``__eq__`` do, even
    with a ``BaseException``) and walks a bounded amount: containers deeper than
    ``_MAX_DEPTH`` or seen again on the way down (cycles) become a marker string,
    longer ones are cut after ``_MAX_ITEMS`` items, at most ``_MAX_NODES`` values are
    converted. With ``redact`` (the default) the value of every secret-like mapping
    key or attrs field becomes ``"***"`` whatever its type, and every string (keys
    too) goes through ``sanitize``: redacted, one line, at most 1,000 characters.
    """
    try:
        return _Walker(redact, bounded=True).convert(value, 0)
    except BaseException:  # noqa: B036 - an export never raises, by contract
        return "<unrepresentable>"


def _type_name(value: Any) -> str:
    try:
        return sanitize(type(value).__name__, 100)
    except BaseException:  # noqa: B036
        return "object"


class _Walker:
    """One export: whether (and how far) it is within a bounded value, and the
    containers on the current path (to mark cycles)."""

    __slots__ = ("redact", "bounded", "nodes", "path")

    def __init__(self, redact: bool, bounded: bool) -> None:
        self.redact = redact
        self.bounded = bounded
        self.nodes = 0
        self.path: Set[int] = set()

    def data(self, value: Any) -> Any:
        """Convert a value from a plugin or submitter within fresh bounds."""
        saved = self.bounded, self.nodes
        self.bounded, self.nodes = True, 0
        try:
            return self.convert(value, 0)
        finally:
            self.bounded, self.nodes = saved

    def full(self, count: int) -> bool:
        return self.bounded and (count >= _MAX_ITEMS or self.nodes >= _MAX_NODES)

    def text(self, value: str) -> str:
        return sanitize(value, _MAX_TEXT) if self.redact else value

    def convert(self, value: Any, depth: int) -> Any:
        self.nodes += 1
        if self.bounded and self.nodes > _MAX_NODES:
            return _CUT
        kind = type(value)
        if value is None or kind is bool or kind is int or kind is float:
            return value
        if kind is str:
            return self.text(value)
        try:
            return self._convert(value, depth)
        except BaseException:  # noqa: B036 - hostile __repr__, __iter__, getattr...
            return "<unrepresentable %s>" % _type_name(value)

    def _convert(self, value: Any, depth: int) -> Any:
        if isinstance(value, enum.Enum):
            return self.convert(value.value, depth + 1)
        # Subclasses are read through the base type's own slots, never their overrides.
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int.__int__(value)
        if isinstance(value, float):
            return float.__float__(value)
        if isinstance(value, str):
            return self.text(str.__str__(value))
        if isinstance(value, (bytes, bytearray, memoryview)):
            # Only the head: the repr of a huge buffer would be as huge.
            with memoryview(value) as view:
                return self.text(repr(bytes(view[:_MAX_TEXT])))
        if isinstance(value, _dt.datetime):
            return self.text(_dt.datetime.isoformat(value))
        if isinstance(value, _dt.date):
            return self.text(_dt.date.isoformat(value))
        if isinstance(value, _dt.time):
            return self.text(_dt.time.isoformat(value))
        kind = type(value)
        if attrs.has(kind) or isinstance(value, (Mapping, list, tuple, set, frozenset)):
            if self.bounded and depth >= _MAX_DEPTH:
                return "<too deep>"
            if id(value) in self.path:
                return "<cycle>"
            self.path.add(id(value))
            try:
                if attrs.has(kind):
                    return self._fields(value, depth)
                if isinstance(value, Mapping):
                    return self._mapping(value, depth, names=False)
                return self._items(value, depth)
            finally:
                self.path.discard(id(value))
        return self.text(repr(value))

    def _entry(self, key: str, value: Any, depth: int, names: bool) -> Any:
        if self.redact and not names and secret_key(key, value):
            return REDACTED
        return self.convert(value, depth + 1)

    def _fields(self, value: Any, depth: int) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if field.metadata.get(_NAMES) and isinstance(item, Mapping):
                self.nodes += 1
                result[field.name] = self._mapping(item, depth + 1, names=True)
            elif field.metadata.get(_DATA) and not self.bounded:
                result[field.name] = self.data(item)
            else:
                result[field.name] = self._entry(field.name, item, depth, False)
        return result

    def _key(self, key: Any) -> str:
        if type(key) is not str:
            try:
                key = str.__str__(key) if isinstance(key, str) else str(key)
            except BaseException:  # noqa: B036
                key = "<unprintable %s>" % _type_name(key)
        return self.text(key)

    def _mapping(self, value: Mapping[Any, Any], depth: int, names: bool) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        for count, (key, item) in enumerate(value.items()):
            if self.full(count):
                result[_CUT] = _CUT
                break
            name = self._key(key)
            result[name] = self._entry(name, item, depth, names)
        return result

    def _items(self, value: Any, depth: int) -> List[Any]:
        result: List[Any] = []
        for count, item in enumerate(value):
            if self.full(count):
                result.append(_CUT)
                break
            result.append(self.convert(item, depth + 1))
        return result


def _redacted_repr(value: Any) -> str:
    """The repr of a user's value as an export shows it (for attrs ``repr=``)."""
    return repr(jsonable(value))


def _plugin_status(value: Any) -> Any:
    """A plugin's own status as status shows it: redacted, bounded, JSON types."""
    return None if value is None else jsonable(value)


def _export(value: Any) -> Dict[str, Any]:
    """``value.to_dict()``: the host's own structure whole, plugin data bounded."""
    try:
        result = _Walker(redact=True, bounded=False).convert(value, 0)
    except BaseException:  # noqa: B036 - an export never raises, by contract
        result = "<unrepresentable>"
    return result if type(result) is dict else {"error": result}
