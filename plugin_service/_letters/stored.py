"""A dead letter read back from a sink's file (``StoredDeadLetter``), and the key
that names a dead letter wherever it is (memory or file) for re-drive marks."""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Optional, Sequence, Tuple

import attrs

from .._diagnostics import DeadLetter, Diagnostic, DiagnosticKind
from .._events import IngressEvent
from .._export import jsonable
from .._lifecycle import LifecycleState

__all__ = ["StoredDeadLetter", "stored_letter", "letter_key"]

_UTC = _dt.timezone.utc


@attrs.frozen
class StoredDeadLetter(DeadLetter):
    """A ``DeadLetter`` as a sink stored it (``SQLiteDeadLetterSink.letters()``).

    ``event`` is rebuilt from the row: with the raw payload when the sink kept it
    (``payload_kept``), else with the stored, redacted one (never sent again by
    ``PluginHost.redrive``). ``payload_format`` is ``"json"`` or ``"repr"`` (the
    payload was no JSON: its redacted repr, a string, is stored). ``id`` is the
    row, ``db`` the file, ``correlation_id`` and ``attempt`` the event's as
    stored (redacted), ``at`` when it became a dead letter, ``redriven_at`` when it
    was re-driven (None: not yet), ``pid`` the process that stored it.
    """

    id: int = attrs.field(kw_only=True)
    db: str = attrs.field(kw_only=True)
    correlation_id: Optional[str] = attrs.field(kw_only=True)
    attempt: Optional[int] = attrs.field(kw_only=True)
    at: _dt.datetime = attrs.field(kw_only=True)
    payload_format: str = attrs.field(kw_only=True)
    payload_kept: bool = attrs.field(kw_only=True)
    #: Why the raw payload is not stored, None when ``payload_kept``.
    payload_missing: Optional[str] = attrs.field(kw_only=True)
    redriven_at: Optional[_dt.datetime] = attrs.field(kw_only=True)
    pid: int = attrs.field(kw_only=True)


def _when(epoch: Optional[float]) -> Optional[_dt.datetime]:
    return None if epoch is None else _dt.datetime.fromtimestamp(epoch, _UTC)


def _iso(text: Any, default: _dt.datetime) -> _dt.datetime:
    try:
        value = _dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return default
    return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)


def _event(row: Sequence[Any], at: _dt.datetime) -> IngressEvent:
    """The event of a row: its raw fields when kept, else the stored ones."""
    (ingress, source, kind, created, attempt, cid, payload_text, raw) = (
        row[7], row[8], row[9], row[10], row[11], row[6], row[12], row[14])
    payload: Any = json.loads(payload_text)
    if raw is not None:
        fields = json.loads(raw)
        ingress, source, kind = fields["ingress"], fields["source"], fields["kind"]
        cid, payload, created = fields["correlation_id"], fields["payload"], fields["created_at"]
        attempt = fields["attempt"]
    return IngressEvent(ingress, source, payload, kind=kind, created_at=_iso(created, at),
                        attempt=attempt if type(attempt) is int else 1,
                        correlation_id=cid if type(cid) is str else "")


def stored_letter(db: str, row: Sequence[Any]) -> StoredDeadLetter:
    """The letter of one ``SELECT`` row: ``id``, the sink's columns, ``redriven.at``."""
    (row_id, service, kind, state, message, at_epoch, cid) = row[:7]
    at = _when(at_epoch)
    assert at is not None
    try:
        diagnostic_kind: Any = DiagnosticKind(kind)
    except ValueError:  # written by a newer version: kept as its text
        diagnostic_kind = kind
    try:
        lifecycle: Any = LifecycleState(state)
    except ValueError:
        lifecycle = state
    diagnostic = Diagnostic(diagnostic_kind, lifecycle, message, at, cid)
    return StoredDeadLetter(
        service, _event(row, at), diagnostic, id=row_id, db=db, correlation_id=cid,
        attempt=row[11], at=at, payload_format=row[13], payload_kept=row[14] is not None,
        payload_missing=row[15], redriven_at=_when(row[17]), pid=row[16])


def letter_key(letter: DeadLetter) -> Tuple[str, str, int]:
    """``(service, correlation id, attempt)`` as a sink stores them (redacted):
    the same for a letter of ``dead_letters()`` and its row in a file."""
    if isinstance(letter, StoredDeadLetter):
        return letter.service, letter.correlation_id or "", letter.attempt or 0
    exported = jsonable(letter.event)
    fields = exported if type(exported) is dict else {}
    cid, attempt = fields.get("correlation_id"), fields.get("attempt")
    return (str(jsonable(letter.service)), cid if type(cid) is str else "",
            attempt if type(attempt) is int else 0)
