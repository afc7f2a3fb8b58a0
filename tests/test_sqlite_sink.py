"""SQLiteDeadLetterSink: dead letters in a file that outlives the process, written
by several processes at once, redacted, read back with filters."""
from __future__ import annotations

import datetime as _dt
import sqlite3

import pytest
from support.letters import finish, write_workdir, writer
from support.timing import HANG

from plugin_service import (
    DeadLetter,
    DiagnosticKind,
    Ingress,
    IngressEvent,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    SQLiteDeadLetterSink,
    StoredDeadLetter,
)

pytestmark = pytest.mark.timeout(120)


class Failing(ServicePlugin):
    ingresses = (Ingress("in"),)

    def handle_ingress(self, event, ctx):
        raise RuntimeError("refused with token=abc123secret")


def _store(path, payloads, keep=False, service="svc"):
    """A host whose events of ``payloads`` all fail into an SQLite sink at ``path``."""
    sink = SQLiteDeadLetterSink(path, keep_payloads=keep)
    with PluginHost(dead_letter_sink=sink) as host:
        host.add_service(service, Failing, ServiceConfig(fail_after=None))
        host.start_all(timeout=HANG)
        futures = [host.submit(service, IngressEvent("in", "test", p)) for p in payloads]
        for future in futures:
            future.exception(timeout=HANG)
    return futures


def test_the_file_is_read_back_from_another_process_after_its_host_is_gone(tmp_path):
    workdir = write_workdir(tmp_path)
    db = tmp_path / "letters.db"
    finish(writer(workdir, db, 3, keep=False, tag="child"))  # the writer has exited
    letters = SQLiteDeadLetterSink(db).letters()
    assert [type(letter) for letter in letters] == [StoredDeadLetter] * 3
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    first = letters[0]
    assert first.service == "flaky" and first.attempt == 1
    assert first.event.correlation_id == "child-0" and first.correlation_id == "child-0"
    assert first.event.payload == {"tag": "child", "n": 0, "password": "***"}
    assert first.payload_format == "json" and not first.payload_kept
    assert first.diagnostic.kind is DiagnosticKind.DISPATCH_FAILED
    assert "hunter2" not in first.diagnostic.message
    assert first.at.tzinfo is not None and first.redriven_at is None
    assert first.pid != __import__("os").getpid()


def test_the_file_is_in_wal_mode(tmp_path):
    db = tmp_path / "letters.db"
    SQLiteDeadLetterSink(db)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_processes_write_the_same_file_at_once(tmp_path):
    workdir = write_workdir(tmp_path)
    db = tmp_path / "letters.db"
    SQLiteDeadLetterSink(db)  # the schema first, then two writers side by side
    children = [writer(workdir, db, 40, keep=True, tag=tag) for tag in ("a", "b")]
    for child in children:
        finish(child)  # each asserts its host's sink wrote all 40
    letters = SQLiteDeadLetterSink(db).letters()
    assert len(letters) == 80 and len({letter.id for letter in letters}) == 80
    for tag in ("a", "b"):
        mine = [letter for letter in letters if letter.event.payload["tag"] == tag]
        assert [letter.event.payload["n"] for letter in mine] == list(range(40))
    assert len({letter.pid for letter in letters}) == 2


def test_stored_values_are_redacted_in_the_file_itself(tmp_path):
    db = tmp_path / "letters.db"
    _store(db, [{"password": "hunter2", "note": "Authorization: Bearer abc.def.ghi"}])
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert b"hunter2" not in raw and b"abc123secret" not in raw and b"abc.def.ghi" not in raw
    (letter,) = SQLiteDeadLetterSink(db).letters()
    assert letter.event.payload["password"] == "***"
    assert "***" in letter.diagnostic.message


def test_a_payload_that_is_no_json_is_stored_as_its_repr_marked(tmp_path):
    db = tmp_path / "letters.db"
    _store(db, [{1, 2}, b"bytes token=xyz"])
    first, second = SQLiteDeadLetterSink(db).letters()
    assert (first.payload_format, first.event.payload) == ("repr", "{1, 2}")
    assert second.payload_format == "repr" and "xyz" not in second.event.payload


def test_keep_payloads_stores_the_raw_event_only_if_it_round_trips(tmp_path):
    db = tmp_path / "letters.db"
    _store(db, [{"password": "hunter2"}, (1, 2)], keep=True)
    kept, tuple_ = SQLiteDeadLetterSink(db).letters()
    assert kept.payload_kept and kept.event.payload == {"password": "hunter2"}
    assert kept.to_dict()["event"]["payload"] == {"password": "***"}  # exports redact
    assert not tuple_.payload_kept and "JSON" in tuple_.payload_missing
    assert tuple_.event.payload == [1, 2]  # the stored (redacted) copy


def test_letters_filter_by_service_kind_and_time(tmp_path):
    db = tmp_path / "letters.db"
    _store(db, ["one"], service="first")
    middle = _dt.datetime.now(_dt.timezone.utc)
    _store(db, ["two"], service="second")
    sink = SQLiteDeadLetterSink(db)
    assert [x.event.payload for x in sink.letters()] == ["one", "two"]
    assert [x.event.payload for x in sink.letters(service="second")] == ["two"]
    assert [x.event.payload for x in sink.letters(since=middle)] == ["two"]
    assert [x.event.payload for x in sink.letters(since=middle.timestamp())] == ["two"]
    assert len(sink.letters(kind=DiagnosticKind.DISPATCH_FAILED)) == 2
    assert len(sink.letters(kind="dispatch_failed")) == 2
    assert sink.letters(kind="dispatch_timeout") == []


def test_a_file_that_cannot_be_opened_raises_at_once(tmp_path):
    with pytest.raises(sqlite3.Error):
        SQLiteDeadLetterSink(tmp_path / "no such dir" / "letters.db")
