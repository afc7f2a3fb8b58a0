"""Hostile input never stops ``plugin-service run``: each bad line gets one typed
rejection line and the run goes on with the next one.

Each test runs the real command in a child process (see ``support.cli``) and
synchronizes on its output lines.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.cli import (
    _by_line,
    _command,
    _env,
    _event,
    _status_lines,
)
from support.timing import PROCESS_HANG

DEEP = "[" * 1000 + "]" * 1000  # 2 KB, but nested beyond the JSON decoder's recursion


def test_deeply_nested_line_is_rejected_and_the_next_line_answered(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(DEEP, _event("after"))
    outcomes = _by_line([child.out_line(), child.out_line()])
    assert outcomes[1]["outcome"] == "rejected"
    assert outcomes[1]["error"]["type"] == "MalformedLine"
    assert "nested" in outcomes[1]["error"]["message"]
    assert outcomes[2]["outcome"] == "succeeded"
    code, rest, errors = child.finish()
    assert (code, rest) == (0, [])
    assert not any("Traceback" in line for line in errors)


def test_deeply_nested_payload_is_rejected_and_the_next_line_answered(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send('{"service": "echo", "ingress": "in", "payload": %s}' % DEEP, _event("after"))
    outcomes = _by_line([child.out_line(), child.out_line()])
    assert outcomes[1]["outcome"] == "rejected"
    assert outcomes[1]["error"]["type"] == "MalformedLine"
    assert outcomes[2]["outcome"] == "succeeded"


def test_line_over_max_line_bytes_is_rejected_as_line_too_long(spawn: Any) -> None:
    child = spawn("run", "--max-line-bytes", "1000", "cli_plugins:Echo")
    child.send(_event("x" * 5000), _event("after"))
    outcomes = _by_line([child.out_line(), child.out_line()])
    assert outcomes[1]["outcome"] == "rejected"
    assert outcomes[1]["error"]["type"] == "LineTooLong"
    assert outcomes[1]["error"]["kind"] == "line_too_long"
    assert "1000" in outcomes[1]["error"]["message"]
    assert outcomes[2] == {**outcomes[2], "outcome": "succeeded", "result": {"echo": "after"}}


def test_line_of_exactly_max_line_bytes_is_accepted(spawn: Any) -> None:
    line = json.dumps(_event("y"))
    child = spawn("run", "--max-line-bytes", str(len(line)), "cli_plugins:Echo")
    child.send(line)
    assert child.out_line()["outcome"] == "succeeded"


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/%d/status" % pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.timeout(120)
def test_huge_line_without_newline_is_skipped_in_bounded_memory(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")  # the default cap: 1 MiB
    child.send(_event("before"))
    assert child.out_line()["outcome"] == "succeeded"
    baseline = _peak_rss_kib(child.proc.pid)
    assert child.proc.stdin is not None
    chunk = "z" * (1 << 20)
    for _ in range(50):  # 50 MB with no newline, then a good line
        child.proc.stdin.write(chunk)
    child.send("", _event("after"))
    outcomes = _by_line([child.out_line(), child.out_line()])
    assert outcomes[2]["error"]["type"] == "LineTooLong"
    assert outcomes[3]["outcome"] == "succeeded"
    # The child never held the 50 MB line: its peak grew by a few buffers at most.
    assert _peak_rss_kib(child.proc.pid) - baseline < 20 * 1024
    assert child.finish()[0] == 0


def test_closed_stdin_is_end_of_input_not_a_traceback(workdir: Path) -> None:
    # ``<&-`` closes fd 0 in the child (stdin=DEVNULL would leave it open).
    done = subprocess.run(["/bin/sh", "-c", 'exec "$@" <&-', "sh",
                           *_command("run", "cli_plugins:Echo")],
                          cwd=workdir, env=_env(workdir), capture_output=True, text=True,
                          timeout=PROCESS_HANG, check=False)
    assert "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    (final,) = _status_lines(done.stderr.splitlines())
    assert final["status"]["services"]["echo"]["state"] == "stopped"



# ------------------------------------------------------ the line splitter
def _split(chunks: list[bytes], limit: int) -> list[bytes | None]:
    from plugin_service._cli.feed import _LineSplitter

    splitter = _LineSplitter(limit)
    lines: list[bytes | None] = [line for chunk in chunks for line in splitter.feed(chunk)]
    last = splitter.end()
    return lines + ([last] if last is not None else [])


def test_splitter_joins_a_line_cut_across_chunks_and_keeps_the_last_one() -> None:
    assert _split([b"ab", b"c\nde", b"f\n", b"g"], limit=10) == [b"abc\n", b"def\n", b"g"]


def test_splitter_reports_a_long_line_once_across_chunks_and_resumes() -> None:
    # None stands for a line over the limit: reported as soon as it is known.
    assert _split([b"12345", b"6789", b"0123", b"\nok\n"], limit=5) == [None, b"ok\n"]
    assert _split([b"123456\nok\n"], limit=5) == [None, b"ok\n"]
    assert _split([b"12345\n"], limit=5) == [b"12345\n"]
    assert _split([b"123456"], limit=5) == [None]
