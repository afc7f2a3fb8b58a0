"""``plugin-service run`` and signals: the first SIGINT or SIGTERM drains within a bound it
announces, a second one cuts the drain short; exit codes say how the run ended.

Each test runs the real command in a child process, sends real signals to its PID and
synchronizes on the lines it writes (see ``support.cli``), never on sleeps.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from support.cli import (
    _by_line,
    _event,
    _run_once,
    _status_lines,
)
from support.stacks import shown


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_announces_the_drain_and_its_bound_then_drains(
        spawn: Any, workdir: Path, signum: int) -> None:
    child = spawn("run", "--stop-timeout", "25", "--cancel-grace", "4",
                  "cli_plugins:Gated", "cli_plugins:Echo")
    child.send(*[_event(n, service="gated") for n in (1, 2, 3)], _event("sync"))
    assert child.out_line()["line"] == 4  # so lines 1-3 were accepted, and wait
    child.proc.send_signal(signum)  # stdin stays open: the signal alone stops the run
    line = child.err_line(lambda line: "draining" in line)
    assert signal.Signals(signum).name in line
    assert "25s" in line and "4s" in line  # the bound: stop timeout + cancel grace
    assert "again" in line  # how to cut it short
    (workdir / "gate").touch()
    code, outcomes, _ = child.finish(close_stdin=False)
    assert code == 0
    assert sorted((o["line"], o["outcome"]) for o in outcomes) == [
        (1, "succeeded"), (2, "succeeded"), (3, "succeeded")]


def test_second_signal_cuts_the_drain_short_and_still_answers_every_line(
        spawn: Any) -> None:
    # A 60 s stop timeout: without the second signal the drain would outlast the test.
    child = spawn("run", "--stop-timeout", "60", "--cancel-grace", "10",
                  "cli_plugins:Blocker")
    child.send(*[_event(n, service="blocker") for n in (1, 2, 3)])
    child.err_line(lambda line: line.startswith("entered 1"))  # 2 and 3 are queued
    child.proc.send_signal(signal.SIGTERM)
    child.err_line(lambda line: "draining" in line)
    child.proc.send_signal(signal.SIGINT)
    code, outcomes, errors = child.finish(close_stdin=False)
    assert code == 0
    outcomes_by_line = _by_line(outcomes)
    assert sorted(outcomes_by_line) == [1, 2, 3] and len(outcomes) == 3
    # The running handler was cancelled and returned; the queued events were dropped.
    assert outcomes_by_line[1]["outcome"] == "succeeded"
    assert outcomes_by_line[1]["result"] == "cancelled"
    for number in (2, 3):
        assert outcomes_by_line[number]["outcome"] == "dropped"
        assert outcomes_by_line[number]["error"]["type"] == "ServiceStopped"
    assert any("stopping now" in line for line in errors)
    final = _status_lines(errors)[-1]["status"]["services"]["blocker"]
    assert final["state"] == "stopped"
    assert final["counters"]["dropped"] == 2


def test_second_signal_cuts_short_the_wait_for_a_stuck_tool(spawn: Any) -> None:
    # The tool ignores cancellation for 60 s and its timeout is 60 s: only the
    # second signal (then --cancel-grace) can end the wait for it.
    child = spawn("run", "--dispatch-timeout", "60", "--cancel-grace", "0.5",
                  "cli_plugins:StuckTool")
    child.send({"tool": "stucktool", "request": 1})
    child.err_line(lambda line: line.startswith("tool entered 1"))
    child.proc.send_signal(signal.SIGTERM)
    child.err_line(lambda line: "draining" in line)
    child.proc.send_signal(signal.SIGINT)
    code, outcomes, errors = child.finish(close_stdin=False)  # well before 60 s
    assert code == 0
    [answer] = outcomes
    assert answer["outcome"] == "timed_out" and answer["error"]["type"] == "ToolTimeout"
    final = _status_lines(errors)[-1]["status"]["tools"]["stucktool"]
    assert final["abandoned"] == 1


def test_a_signal_during_the_drain_after_end_of_input_announces_it(
        spawn: Any, workdir: Path) -> None:
    child = spawn("run", "-v", "INFO", "cli_plugins:Gated", "cli_plugins:Echo")
    child.send(_event(1, service="gated"), _event("sync"))
    assert child.out_line()["line"] == 2
    child.close_stdin()
    child.err_line(lambda line: "stopping on end of input" in line)
    child.proc.send_signal(signal.SIGTERM)
    child.err_line(lambda line: "draining" in line)
    (workdir / "gate").touch()
    code, outcomes, _ = child.finish(close_stdin=False)
    assert code == 0
    assert [(o["line"], o["outcome"]) for o in outcomes] == [(1, "succeeded")]


# ------------------------------------------------------------- exit codes
def test_run_exits_1_when_a_service_ended_failed(workdir: Path) -> None:
    done = _run_once(workdir, "run", "--fail-after", "1", "cli_plugins:Echo",
                     stdin='{"service": "echo", "ingress": "in", "payload": "boom"}\n')
    assert done.returncode == 1
    final = _status_lines(done.stderr.splitlines())[-1]
    assert final["status"]["services"]["echo"]["state"] == "failed"
    messages = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert any("'echo'" in line and "failed" in line for line in messages)


def test_run_exits_1_when_no_service_could_start(workdir: Path) -> None:
    done = _run_once(workdir, "run", "cli_plugins:WontStart",
                     stdin='{"service": "wontstart", "ingress": "in"}\n')
    assert done.returncode == 1
    assert "no service could start" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_exits_0_when_every_service_stopped_cleanly(workdir: Path) -> None:
    done = _run_once(workdir, "run", "cli_plugins:Echo",
                     stdin='{"service": "echo", "ingress": "in", "payload": "boom"}\n')
    assert done.returncode == 0  # a failed event alone does not fail the run


@pytest.mark.parametrize("option", ["--dispatch-timeout", "--stop-timeout",
                                    "--cancel-grace", "--submit-timeout"])
def test_a_bad_number_of_seconds_is_a_usage_error_naming_no_private_function(
        workdir: Path, option: str) -> None:
    done = _run_once(workdir, "run", option, "soon", "cli_plugins:Echo")
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert option in message and "'soon'" in message
    assert "seconds" in message
    assert "_seconds" not in message and "_positive_int" not in message


@pytest.mark.parametrize("option, value", [("--queue-size", "many"),
                                           ("--max-line-bytes", "0"),
                                           ("--metrics-port", "http")])
def test_other_bad_numbers_are_usage_errors_naming_no_private_function(
        workdir: Path, option: str, value: str) -> None:
    done = _run_once(workdir, "run", option, value, "cli_plugins:Echo")
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert option in message and repr(value) in message
    assert "invalid _" not in message and "_port" not in message


# ------------------------------------------------------- SIGUSR1: stacks
def _stack_line(child: Any) -> dict[str, Any]:
    """The status line SIGUSR1 asked for, and the handler_stack line after it."""
    child.proc.send_signal(signal.SIGUSR1)
    status = json.loads(child.err_line(lambda line: line.startswith('{"status"')))
    assert status["reason"] == "SIGUSR1"
    stack = json.loads(child.err_line(lambda line: line.startswith("{")))
    assert stack["service"] == "wedged" and stack["reason"] == "SIGUSR1"
    assert stack["handler_stack"] == status["status"]["services"]["wedged"]["handler_stack"]
    assert status["status"]["services"]["echo"]["handler_stack"] is None
    return stack


def test_sigusr1_writes_the_stack_of_an_overdue_handler_and_the_run_goes_on(
        spawn: Any, workdir: Path) -> None:
    child = spawn("run", "--dispatch-timeout", "0.2", "--cancel-grace", "30",
                  "cli_plugins:Wedged", "cli_plugins:Echo")
    child.send(_event("stuck", service="wedged"))
    assert child.out_line()["outcome"] == "timed_out"  # decided: the handler is overdue
    stack = _stack_line(child)["handler_stack"]
    assert any(shown("Wedged.wait_for_the_gate_file") in frame for frame in stack["frames"])
    assert stack["thread"] == "wedged"
    child.send(_event("still here"))
    assert child.out_line()["result"] == {"echo": "still here"}  # it kept running
    (workdir / "gate").touch()
    assert child.finish()[0] == 0


def test_sigusr1_writes_the_stack_of_a_handler_past_stack_after(
        spawn: Any, workdir: Path) -> None:
    child = spawn("run", "--stack-after", "0", "cli_plugins:Wedged", "cli_plugins:Echo")
    child.send(_event("slow", service="wedged"))
    child.err_line(lambda line: line.startswith("wedged slow"))
    stack = _stack_line(child)["handler_stack"]
    assert any(shown("Wedged.wait_for_the_gate_file") in frame for frame in stack["frames"])
    (workdir / "gate").touch()
    code, outcomes, _ = child.finish()
    assert code == 0
    assert [outcome["result"] for outcome in outcomes] == ["unwedged"]
