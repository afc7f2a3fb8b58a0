"""``plugin-service dead-letters list|redrive --db PATH`` in a real child process,
JSON lines on stdout."""
from __future__ import annotations

import json
import subprocess

import pytest
from support.cli import _command, _env
from support.letters import finish, write_workdir, writer
from support.timing import PROCESS_HANG

pytestmark = pytest.mark.timeout(180)


def _cli(workdir, *args):
    done = subprocess.run(_command("dead-letters", *args), cwd=workdir, env=_env(workdir),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=PROCESS_HANG)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


@pytest.fixture
def stored(tmp_path):
    """A workdir and a file holding three dead letters of service "flaky" (raw kept)."""
    workdir = write_workdir(tmp_path)
    db = tmp_path / "letters.db"
    finish(writer(workdir, db, 3, keep=True, tag="w"))
    return workdir, str(db)


def test_list_writes_one_redacted_json_line_per_letter(stored):
    workdir, db = stored
    code, lines, _ = _cli(workdir, "list", "--db", db)
    assert code == 0
    assert [line["correlation_id"] for line in lines] == ["w-0", "w-1", "w-2"]
    assert lines[0]["event"]["payload"] == {"tag": "w", "n": 0, "password": "***"}
    assert lines[0]["diagnostic"]["kind"] == "dispatch_failed"
    assert lines[0]["redriven_at"] is None and lines[0]["payload_kept"] is True
    code, only, _ = _cli(workdir, "list", "--db", db, "--id", str(lines[1]["id"]))
    assert [line["correlation_id"] for line in only] == ["w-1"]
    assert _cli(workdir, "list", "--db", db, "--service", "other")[1] == []


def test_redrive_hosts_the_services_and_marks_the_letters(stored):
    workdir, db = stored
    code, lines, err = _cli(workdir, "redrive", "--db", db, "flaky=letters_plugins:Flaky")
    assert code == 0, err
    assert [(line["correlation_id"], line["attempt"], line["outcome"]) for line in lines] == [
        ("w-0", 2, "succeeded"), ("w-1", 2, "succeeded"), ("w-2", 2, "succeeded")]
    assert lines[0]["result"]["payload"]["n"] == 0  # the raw payload was re-driven
    listed = _cli(workdir, "list", "--db", db)[1]
    assert all(line["redriven_at"] is not None for line in listed)
    assert _cli(workdir, "list", "--db", db, "--pending")[1] == []
    # Nothing left to re-drive; one named by id is reported as refused.
    assert _cli(workdir, "redrive", "--db", db, "flaky=letters_plugins:Flaky")[:2] == (0, [])
    code, lines, _ = _cli(workdir, "redrive", "--db", db, "--id", str(listed[0]["id"]),
                          "flaky=letters_plugins:Flaky")
    assert code == 1
    assert lines[0]["outcome"] == "rejected"
    assert lines[0]["error"]["type"] == "RedriveRefused"


def test_redrive_of_letters_stored_without_payload_reports_each(tmp_path):
    workdir = write_workdir(tmp_path)
    db = tmp_path / "letters.db"
    finish(writer(workdir, db, 2, keep=False, tag="n"))
    code, lines, _ = _cli(workdir, "redrive", "--db", str(db), "flaky=letters_plugins:Flaky")
    assert code == 1
    assert [line["error"]["kind"] for line in lines] == ["redrive_refused"] * 2
    assert "payload" in lines[0]["error"]["message"]


def test_a_file_that_cannot_be_read_is_a_usage_error(tmp_path):
    code, lines, err = _cli(tmp_path, "list", "--db", str(tmp_path / "no" / "such.db"))
    assert code == 2 and lines == [] and "cannot read dead letters" in err
