"""``SQLiteDeadLetterSink``: dead letters in an SQLite file (WAL mode) that outlives
the process, shared by every host and process that writes it.

Each thread has its own connection (``sqlite3`` connections are not shared across
threads); each write is one statement, its own short transaction, and a writer
that finds the file locked waits up to ``busy_timeout`` for it. Stored values are
the redacted export of the letter (``DeadLetter.to_dict``); the raw event, which
a re-drive needs, only with ``keep_payloads=True``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import threading
from typing import Any, Dict, List, Optional, Tuple

from .._diagnostics import DeadLetter, DiagnosticKind
from .._export import jsonable
from .._redact import sanitize
from .stored import StoredDeadLetter, letter_key, stored_letter

__all__ = ["SQLiteDeadLetterSink"]

_UTC = _dt.timezone.utc
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
        message TEXT NOT NULL, at REAL NOT NULL, correlation_id TEXT,
        ingress TEXT, source TEXT, event_kind TEXT, created_at TEXT, attempt INTEGER,
        payload TEXT NOT NULL, payload_format TEXT NOT NULL,
        raw TEXT, raw_missing TEXT, pid INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS dead_letters_at ON dead_letters (at)",
    # One row per re-driven (service, correlation id, attempt): the primary key is
    # what makes a re-drive claim atomic across processes.
    """CREATE TABLE IF NOT EXISTS redriven (
        service TEXT NOT NULL, correlation_id TEXT NOT NULL, attempt INTEGER NOT NULL,
        at REAL NOT NULL, PRIMARY KEY (service, correlation_id, attempt))""",
)
_COLUMNS = ("service", "kind", "state", "message", "at", "correlation_id", "ingress",
            "source", "event_kind", "created_at", "attempt", "payload", "payload_format",
            "raw", "raw_missing", "pid")
_INSERT = "INSERT INTO dead_letters (%s) VALUES (%s)" % (
    ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS)))
_SELECT = ("SELECT l.id, %s, r.at FROM dead_letters l LEFT JOIN redriven r ON "
           "r.service = l.service AND r.correlation_id = l.correlation_id "
           "AND r.attempt = l.attempt" % ", ".join("l." + c for c in _COLUMNS))
_NOT_KEPT = "keep_payloads is off"


def _read(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name)
    except BaseException:  # noqa: B036 - an event subclass's property
        return None


def _repr_text(value: Any) -> str:
    try:
        text = repr(value)
    except BaseException:  # noqa: B036
        return "<unrepresentable>"
    return sanitize(text, 1000) if type(text) is str else "<unrepresentable>"


def _payload(payload: Any) -> Tuple[str, str]:
    """``(format, JSON text)``: the redacted payload as JSON where the payload is
    JSON itself, else its redacted repr as a JSON string (``"repr"``)."""
    try:
        json.dumps(payload, allow_nan=False)
    except BaseException:  # noqa: B036 - not JSON (or hostile)
        return "repr", json.dumps(_repr_text(payload))
    return "json", json.dumps(jsonable(payload), allow_nan=False)


def _raw(event: Any) -> Tuple[Optional[str], Optional[str]]:
    """``(raw JSON, None)`` or ``(None, why not)``: the event's own fields, kept only
    if they come back equal from JSON (a tuple or a set would not)."""
    created = _read(event, "created_at")
    fields = {"ingress": _read(event, "ingress"), "source": _read(event, "source"),
              "kind": _read(event, "kind"), "attempt": _read(event, "attempt"),
              "correlation_id": _read(event, "correlation_id"),
              "payload": _read(event, "payload"),
              "created_at": created.isoformat() if isinstance(created, _dt.datetime) else None}
    try:
        text = json.dumps(fields, allow_nan=False)
        if json.loads(text) == fields:
            return text, None
    except BaseException:  # noqa: B036
        pass
    return None, "its payload is not plain JSON (it would not come back equal)"


def _epoch(since: Any) -> Optional[float]:
    if since is None:
        return None
    if isinstance(since, _dt.datetime):
        return (since if since.tzinfo is not None else since.replace(tzinfo=_UTC)).timestamp()
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return float(since)
    raise TypeError("since must be a datetime or epoch seconds, got %r" % (since,))


class SQLiteDeadLetterSink:
    """A dead-letter sink storing every letter in the SQLite file ``path``.

    Safe for several hosts, threads and processes writing the same file: WAL
    mode, a connection per thread, one short transaction per letter, and a
    ``busy_timeout`` (seconds) to wait for another writer. Each row holds the
    service, the diagnostic (kind, state, message, time), the event's fields and
    attempt, and its payload redacted: as JSON where the payload is JSON, else
    its repr (``payload_format`` ``"repr"``). With ``keep_payloads=True`` the raw
    event (payload unredacted, as JSON) is stored too: only then can
    ``PluginHost.redrive`` send it again. Raises ``sqlite3.Error`` for a file that
    cannot be opened.
    """

    def __init__(self, path: "str | os.PathLike[str]", *, keep_payloads: bool = False,
                 busy_timeout: float = 10.0) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.keep_payloads = bool(keep_payloads)
        self._busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._connection()  # fail here, not on the sink thread, for a bad path

    def __repr__(self) -> str:
        return "SQLiteDeadLetterSink(%r, keep_payloads=%r)" % (self.path, self.keep_payloads)

    def _connection(self) -> sqlite3.Connection:
        connection: Optional[sqlite3.Connection] = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=self._busy_timeout,
                                         isolation_level=None)
            connection.execute("PRAGMA busy_timeout = %d" % int(self._busy_timeout * 1000))
            connection.execute("PRAGMA journal_mode = WAL")
            for statement in _SCHEMA:
                connection.execute(statement)
            self._local.connection = connection
        return connection

    def close(self) -> None:
        """Close the calling thread's connection (another call opens a new one).
        Other threads' connections close when their threads end."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = None
            connection.close()

    # ------------------------------------------------------------ writing
    def write(self, letter: DeadLetter) -> None:
        """Store ``letter`` (the host's sink thread calls this); raises
        ``sqlite3.Error`` if the file cannot be written."""
        event, diagnostic = letter.event, letter.diagnostic
        exported = jsonable(event)
        fields: Dict[str, Any] = exported if type(exported) is dict else {}
        payload_format, payload = _payload(_read(event, "payload"))
        raw, raw_missing = _raw(event) if self.keep_payloads else (None, _NOT_KEPT)
        attempt = fields.get("attempt")
        row = (jsonable(letter.service), diagnostic.kind.value, diagnostic.state.value,
               diagnostic.message, diagnostic.at.timestamp(), fields.get("correlation_id"),
               fields.get("ingress"), fields.get("source"), fields.get("kind"),
               fields.get("created_at"), attempt if type(attempt) is int else None,
               payload, payload_format, raw, raw_missing, os.getpid())
        self._connection().execute(_INSERT, row)

    # ------------------------------------------------------------ reading
    def letters(self, service: Optional[str] = None, kind: Any = None,
                since: Any = None) -> List[StoredDeadLetter]:
        """The stored letters, oldest first: of ``service``, of diagnostic ``kind``
        (a ``DiagnosticKind`` or its value: ``"dispatch_failed"``...), recorded at
        or after ``since`` (an aware datetime, a naive one taken as UTC, or epoch
        seconds). Re-driven letters are included, flagged by ``redriven_at``."""
        where, params = [], []  # type: List[str], List[Any]
        if service is not None:
            where.append("l.service = ?")
            params.append(service)
        if kind is not None:
            where.append("l.kind = ?")
            params.append(kind.value if isinstance(kind, DiagnosticKind) else str(kind))
        at = _epoch(since)
        if at is not None:
            where.append("l.at >= ?")
            params.append(at)
        query = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY l.id"
        rows = self._connection().execute(query, params).fetchall()
        return [stored_letter(self.path, row) for row in rows]

    # ---------------------------------------------------------- re-driving
    def claim_redrive(self, letter: DeadLetter, *, force: bool = False
                      ) -> Tuple[bool, Optional[float]]:
        """Mark ``letter`` re-driven now, atomically across processes: ``(True,
        previous)`` if marked (``previous``: when it had been, with ``force``), or
        ``(False, when)`` if it had been re-driven already."""
        key = letter_key(letter)
        connection = self._connection()
        now = _dt.datetime.now(_UTC).timestamp()
        connection.execute("BEGIN IMMEDIATE")
        try:
            found = connection.execute(
                "SELECT at FROM redriven WHERE service = ? AND correlation_id = ? "
                "AND attempt = ?", key).fetchone()
            previous = None if found is None else float(found[0])
            if previous is not None and not force:
                return False, previous
            connection.execute("INSERT OR REPLACE INTO redriven VALUES (?, ?, ?, ?)",
                               key + (now,))
            return True, previous
        finally:
            connection.execute("COMMIT")

    def release_redrive(self, letter: DeadLetter, previous: Optional[float]) -> None:
        """Undo :meth:`claim_redrive` (its submit was refused): back to ``previous``."""
        key = letter_key(letter)
        if previous is None:
            self._connection().execute(
                "DELETE FROM redriven WHERE service = ? AND correlation_id = ? "
                "AND attempt = ?", key)
        else:
            self._connection().execute(
                "INSERT OR REPLACE INTO redriven VALUES (?, ?, ?, ?)", key + (previous,))
