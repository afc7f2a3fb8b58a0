"""Ingress events and the ingress declarations a service accepts them through."""
from __future__ import annotations

import datetime as _dt
import itertools
import os
import secrets
from typing import Any, Callable, Dict, Optional, Tuple

import attrs

from ._guarded import describe, type_name
from ._redact import sanitize

__all__ = ["IngressEvent", "Ingress", "check_event"]

_UTC = _dt.timezone.utc
_now = _dt.datetime.now


def _fresh_prefix() -> str:
    return "%x%s" % (os.getpid(), secrets.token_hex(4))


# Correlation ids are a per-process random prefix plus a counter: unique, and far
# cheaper than uuid4 on the hot path.  A forked child gets a new prefix.
_prefix = _fresh_prefix()
_counter = itertools.count(1)


def _reset_after_fork() -> None:
    global _prefix, _counter
    _prefix = _fresh_prefix()
    _counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def new_correlation_id() -> str:
    """A process-unique correlation id."""
    return "%s-%x" % (_prefix, next(_counter))


def _utcnow() -> _dt.datetime:
    return _now(_UTC)


_NOTHING: Any = object()


@attrs.frozen(init=False)
class IngressEvent:
    """One event for a service, addressed to one of its ingresses.

    Construction does not validate; the host validates at ``submit`` and refuses a
    bad event with ``InvalidEvent``. ``created_at`` defaults to now (UTC-aware) and
    ``correlation_id`` to a process-unique string. Retries deliver a copy with
    ``attempt`` incremented and the same correlation id. ``expires_at`` (an aware
    datetime, UTC, or None) is when the event stops being worth handling: one
    still queued then is never handed to the plugin (README: Event deadlines).
    """

    ingress: str
    source: str
    payload: Any = None
    kind: str = attrs.field(default="event", kw_only=True)
    created_at: _dt.datetime = attrs.field(factory=_utcnow, kw_only=True)
    attempt: int = attrs.field(default=1, kw_only=True)
    correlation_id: str = attrs.field(factory=new_correlation_id, kw_only=True)
    expires_at: Optional[_dt.datetime] = attrs.field(default=None, kw_only=True)

    # Hand-written because every user builds one event per message: setting the
    # slots through their descriptors and inlining the two factories costs about
    # half of the attrs-generated __init__ (which goes through object.__setattr__).
    def __init__(self, ingress: str, source: str, payload: Any = None, *,
                 kind: str = "event", created_at: Any = _NOTHING, attempt: int = 1,
                 correlation_id: Any = _NOTHING,
                 expires_at: Optional[_dt.datetime] = None) -> None:
        _set_ingress(self, ingress)
        _set_source(self, source)
        _set_payload(self, payload)
        _set_kind(self, kind)
        _set_created_at(self, _now(_UTC) if created_at is _NOTHING else created_at)
        _set_attempt(self, attempt)
        _set_correlation_id(
            self, "%s-%x" % (_prefix, next(_counter))
            if correlation_id is _NOTHING else correlation_id)
        _set_expires_at(self, expires_at)


_set_ingress = IngressEvent.__dict__["ingress"].__set__
_set_source = IngressEvent.__dict__["source"].__set__
_set_payload = IngressEvent.__dict__["payload"].__set__
_set_kind = IngressEvent.__dict__["kind"].__set__
_set_created_at = IngressEvent.__dict__["created_at"].__set__
_set_attempt = IngressEvent.__dict__["attempt"].__set__
_set_correlation_id = IngressEvent.__dict__["correlation_id"].__set__
_set_expires_at = IngressEvent.__dict__["expires_at"].__set__


def _names(value: Any) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class Ingress:
    """What a service accepts on one named ingress.

    Empty ``event_kinds`` or ``sources`` accept any. ``validate(payload)`` returning
    a falsy value or raising makes an event invalid; it runs once per submit, on the
    submitting thread.
    """

    name: str
    event_kinds: Tuple[str, ...] = attrs.field(default=(), converter=_names, kw_only=True)
    sources: Tuple[str, ...] = attrs.field(default=(), converter=_names, kw_only=True)
    validate: Optional[Callable[[Any], Any]] = attrs.field(default=None, kw_only=True)


def _blank(value: Any) -> bool:
    return not isinstance(value, str) or not value or value.isspace()


def _safe_repr(value: Any, limit: int = 60) -> str:
    """``value``'s repr for a refusal reason: redacted, one line, bounded."""
    try:
        text = repr(value)
    except Exception:
        text = "<%s>" % type(value).__name__
    return sanitize(text, limit)


def _expiry_refusal(expires: Any) -> Optional[str]:
    """Why ``expires_at`` is not acceptable now (None if it is)."""
    if not isinstance(expires, _dt.datetime):
        return "expires_at must be a datetime or None, got %s" % type(expires).__name__
    try:
        if expires.tzinfo is None or expires.utcoffset() is None:
            return "expires_at is naive; give it a timezone (UTC)"
        now = _now(_UTC)
        if expires <= now:
            return "expires_at %s is already past (now %s)" % (
                expires.isoformat(), now.isoformat())
    except Exception as exc:
        return "expires_at has a broken timezone: %s" % type_name(exc)
    return None


def check_event(event: Any, ingresses: Dict[str, Ingress]) -> Optional[str]:
    """Why ``event`` is not acceptable to a service with ``ingresses`` (None if it is).

    Runs on the submitting thread; calls the ingress's ``validate`` once.
    """
    try:
        if type(event) is not IngressEvent and not isinstance(event, IngressEvent):
            return "expected an IngressEvent, got %s" % type(event).__name__
        name = event.ingress
        try:
            ingress = ingresses.get(name)
        except TypeError:  # an unhashable ingress name
            ingress = None
        if ingress is None:
            return "undeclared ingress %s" % _safe_repr(name)
        # Inlined blank checks: this runs once per submit. A string is blank when empty
        # or all whitespace (``isspace`` stops at the first other character).
        # A str subclass is compared by its exact str value below: its own __eq__
        # (always True, say) must not pass ``sources`` or ``event_kinds``.
        source = event.source
        if type(source) is not str or not source or source.isspace():
            source = str.__str__(source) if isinstance(source, str) else None
            if _blank(source):
                return "blank or non-string source"
        kind = event.kind
        if type(kind) is not str or not kind or kind.isspace():
            kind = str.__str__(kind) if isinstance(kind, str) else None
            if _blank(kind):
                return "blank or non-string kind"
        cid = event.correlation_id
        if type(cid) is not str or not cid or cid.isspace():
            if _blank(cid):
                return "blank or non-string correlation_id"
        attempt = event.attempt
        if type(attempt) is not int or attempt < 1:  # the common case: one check
            if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
                return "attempt must be an int >= 1, got %s" % _safe_repr(attempt)
        created = event.created_at
        if type(created) is not _dt.datetime or created.tzinfo is not _UTC:
            # Anything but the default (an aware UTC datetime) is checked in full.
            if not isinstance(created, _dt.datetime):
                return "created_at must be a datetime, got %s" % type(created).__name__
            try:
                if created.tzinfo is None or created.utcoffset() is None:
                    return "created_at is naive; give it a timezone"
            except Exception as exc:
                return "created_at has a broken timezone: %s" % type_name(exc)
        expires = event.expires_at
        if expires is not None:
            why = _expiry_refusal(expires)
            if why is not None:
                return why
        if ingress.event_kinds and kind not in ingress.event_kinds:
            return "kind %s not accepted by ingress %r" % (_safe_repr(kind), name)
        if ingress.sources and source not in ingress.sources:
            return "source %s not accepted by ingress %r" % (_safe_repr(source), name)
        validate = ingress.validate
        if validate is not None:
            try:
                ok = validate(event.payload)
            except Exception as exc:
                return "validate raised %s" % describe(exc)  # redacted, one line
            if not ok:
                return "payload rejected by validate of ingress %r" % (name,)
        return None
    except Exception as exc:  # a hostile field (raising __eq__, __hash__, getattr...)
        return "event could not be checked: %s" % _safe_repr(exc)
