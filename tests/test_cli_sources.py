"""``plugin-service run --timer SERVICE:INGRESS=SECONDS``: a timer source on the
command line, its events counted in the status, and the usage errors.

Each test runs the real command in a child process (see ``support.cli``) and
synchronizes on its output lines.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from support.cli import _event, _run_once, _status_lines


def test_a_timer_feeds_its_service_and_the_final_status_counts_it(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo", "--timer", "echo:in=0.01")
    child.send(_event("ready"))  # answered: the signal handlers are installed
    assert child.out_line()["outcome"] == "succeeded"
    while True:  # SIGUSR1 until the timer has delivered three ticks
        child.proc.send_signal(signal.SIGUSR1)
        line = child.err_line(lambda text: text.startswith('{"status"'))
        timer = json.loads(line)["status"]["sources"]["timer-1"]
        if timer["submitted"] >= 3:
            break
    code, rest, errors = child.finish()
    assert (code, rest) == (0, [])  # a source's outcomes are not output lines
    final = _status_lines(errors)[-1]["status"]
    timer = final["sources"]["timer-1"]
    assert (timer["service"], timer["state"], timer["rejected"]) == ("echo", "stopped", 0)
    assert timer["received"] == timer["submitted"] + timer["dropped"]
    assert final["services"]["echo"]["counters"]["succeeded"] == timer["submitted"] + 1


@pytest.mark.parametrize(("option", "message"), [
    ("echo:nope=1", "undeclared ingress 'nope'"),
    ("nobody:in=1", "no service named 'nobody'"),
    ("echo:in=0", "every must be a number of seconds > 0"),
    ("echo:in=soon", "invalid number of seconds: 'soon'"),
    ("echo=1", "is not SERVICE:INGRESS=SECONDS"),
])
def test_a_timer_that_cannot_be_attached_is_a_usage_error(
        workdir: Path, option: str, message: str) -> None:
    done = _run_once(workdir, "run", "cli_plugins:Echo", "--timer", option)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_run_help_names_the_timer_option(workdir: Path) -> None:
    done = _run_once(workdir, "run", "--help")
    assert "--timer SERVICE:INGRESS=SECONDS" in done.stdout
