"""The ``plugin-service`` command, run as ``python -m plugin_service`` in a child process
with real stdin, stdout and stderr pipes.

Tests synchronize on what the child writes (outcome lines on stdout, log and
status lines on stderr), never on sleeps. Every child is killed in teardown.
"""
from __future__ import annotations

import ctypes
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.cli import (
    _by_line,
    _command,
    _env,
    _event,
    _run_once,
    _status_lines,
)
from support.timing import PROCESS_HANG

# ---------------------------------------------------------------------- demo
Completed = tuple[int, str, str]  # exit code, stdout, stderr


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Completed]:
    """The demo run twice, side by side, as "short" (``demo --seconds 0.3``) and as
    "default" (``python -m plugin_service`` with no arguments: 3 seconds)."""
    workdir = tmp_path_factory.mktemp("demo")
    commands = {"short": _command("demo", "--seconds", "0.3"), "default": _command()}
    processes = {name: subprocess.Popen(command, cwd=workdir, env=_env(workdir),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, command in commands.items()}
    runs = {}
    try:
        for name, process in processes.items():
            out, err = process.communicate(timeout=PROCESS_HANG)
            runs[name] = (process.returncode, out, err)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return runs


def test_demo_exits_zero_and_prints_the_final_status_table(
        demo_runs: dict[str, Completed]) -> None:
    code, out, _ = demo_runs["short"]
    assert code == 0
    table = out.split("final status:\n", 1)[1].splitlines()
    assert table[0].split()[:4] == ["SERVICE", "STATE", "QUEUE", "IN-FLIGHT"]
    assert table[1].split()[:3] == ["words", "stopped", "0/16"]
    assert table[2].strip().startswith("last error: ")
    assert "dispatch_failed" in table[2] or "invalid_event" in table[2]
    tools = table[table.index("") + 1:]
    assert tools[0].split()[:3] == ["TOOL", "IN-FLIGHT", "CALLS"]
    assert tools[1].split()[0] == "frequency"
    assert tools[2].strip() == "last error: -"


def test_demo_counts_every_fed_event_in_the_final_table(
        demo_runs: dict[str, Completed]) -> None:
    _, out, _ = demo_runs["short"]
    header, row = out.split("final status:\n", 1)[1].splitlines()[:2]
    cells = dict(zip(header.split(), row.split()))
    assert int(cells["ENQUEUED"]) > 0
    assert int(cells["ENQUEUED"]) == (int(cells["SUCCEEDED"]) + int(cells["FAILED"])
                                      + int(cells["TIMED-OUT"]) + int(cells["DROPPED"]))
    assert int(cells["FAILED"]) > 0 and int(cells["REJECTED"]) > 0


def test_demo_prints_plain_status_lines_when_stdout_is_not_a_terminal(
        demo_runs: dict[str, Completed]) -> None:
    _, out, _ = demo_runs["short"]
    live = out.split("final status:", 1)[0]
    assert "\r" not in live
    status_lines = [line for line in live.splitlines() if line.startswith("[")]
    assert status_lines and all("words running" in line for line in status_lines)


def test_demo_is_quiet_on_stderr(demo_runs: dict[str, Completed]) -> None:
    assert demo_runs["short"][2] == ""


def test_python_m_plugin_service_without_arguments_runs_the_demo(
        demo_runs: dict[str, Completed]) -> None:
    code, out, _ = demo_runs["default"]
    assert code == 0
    assert "feeding events for 3s" in out
    assert "final status:" in out


def test_demo_rewrites_one_status_line_in_place_on_a_terminal(workdir: Path) -> None:
    controller, terminal = pty.openpty()
    modes = termios.tcgetattr(terminal)
    modes[1] &= ~termios.ONLCR  # keep "\n" as written, so "\r" is the demo's own
    termios.tcsetattr(terminal, termios.TCSANOW, modes)
    proc = subprocess.Popen(_command("demo", "--seconds", "0.3"), cwd=workdir,
                            env=_env(workdir), stdin=subprocess.DEVNULL, stdout=terminal,
                            stderr=subprocess.DEVNULL)
    os.close(terminal)
    chunks = []
    try:
        deadline = time.monotonic() + PROCESS_HANG
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=PROCESS_HANG) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    text = b"".join(chunks).decode()
    live = text.split("final status:", 1)[0]
    first = live.index("\r[")
    assert live.count("\r[") >= 2  # refreshed at least once, then the last figures
    assert live[first:].rstrip("\n").count("\n") == 0  # all on one terminal line


# ------------------------------------------------------------ run: outcomes
def test_run_answers_an_event_with_its_result_and_correlation_id(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("hello", correlation_id="order-1"))
    assert child.out_line() == {"correlation_id": "order-1", "service": "echo",
                                "outcome": "succeeded", "result": {"echo": "hello"},
                                "line": 1}
    assert child.finish()[:2] == (0, [])


def test_run_generates_a_correlation_id_when_the_line_has_none(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("a"), _event("b"))
    ids = {child.out_line()["correlation_id"], child.out_line()["correlation_id"]}
    assert len(ids) == 2 and all(isinstance(cid, str) and cid for cid in ids)


def test_run_writes_one_outcome_line_per_input_line(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("ok"), "{not json", _event("invalid"), _event("boom"),
               _event("ok", service="nope"), _event("again"))
    code, outcomes, _ = child.finish()
    assert code == 0
    assert sorted(o["line"] for o in outcomes) == [1, 2, 3, 4, 5, 6]
    assert {n: o["outcome"] for n, o in _by_line(outcomes).items()} == {
        1: "succeeded", 2: "rejected", 3: "rejected", 4: "failed", 5: "rejected",
        6: "succeeded"}


def test_run_reports_a_raising_handler_as_failed(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("boom"))
    outcome = child.out_line()
    assert outcome["outcome"] == "failed"
    assert outcome["error"]["type"] == "DispatchFailed"
    assert outcome["error"]["kind"] == "dispatch_failed"
    assert "RuntimeError: boom" in outcome["error"]["message"]


def test_run_reports_a_handler_past_dispatch_timeout_as_timed_out(spawn: Any) -> None:
    child = spawn("run", "--dispatch-timeout", "0.2", "cli_plugins:Stuck")
    child.send(_event(1, service="stuck"))
    outcome = child.out_line()
    assert outcome["outcome"] == "timed_out"
    assert outcome["error"]["type"] == "DispatchTimeout"


def test_run_rejects_an_invalid_event_with_a_typed_error(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("invalid"))
    outcome = child.out_line()
    assert outcome["outcome"] == "rejected"
    assert outcome["error"]["type"] == "InvalidEvent"
    assert outcome["error"]["kind"] == "invalid_event"


def test_run_rejects_a_line_that_is_not_json_and_goes_on(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send("{not json", _event("after"))
    first, second = sorted((child.out_line(), child.out_line()), key=lambda o: o["line"])
    assert first["line"] == 1 and first["outcome"] == "rejected"
    assert first["error"]["type"] == "MalformedLine"
    assert second["outcome"] == "succeeded" and second["result"] == {"echo": "after"}


def test_run_rejects_a_json_line_that_names_neither_service_nor_tool(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send({"payload": 1})
    outcome = child.out_line()
    assert outcome["outcome"] == "rejected"
    assert outcome["error"]["type"] == "MalformedLine"


def test_run_rejects_an_event_without_ingress_as_invalid(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send({"service": "echo", "payload": 1})
    outcome = child.out_line()
    assert outcome["outcome"] == "rejected"
    assert outcome["error"]["type"] == "InvalidEvent"
    assert "ingress" in outcome["error"]["message"]


def test_run_rejects_an_event_for_an_unknown_service(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event(1, service="nope"))
    outcome = child.out_line()
    assert (outcome["service"], outcome["outcome"]) == ("nope", "rejected")
    assert outcome["error"]["type"] == "ServiceNotFound"
    assert outcome["error"]["kind"] == "service_not_found"


def test_run_writes_results_json_cannot_carry_as_their_repr(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Opaque")
    child.send(_event("object", service="opaque"), _event("set", service="opaque"))
    results = {o["line"]: o["result"] for o in (child.out_line(), child.out_line())}
    assert results[1].startswith("<object object at")
    assert sorted(results[2]) == [1, 2]


def test_run_rejects_events_beyond_a_full_queue_with_queue_full(spawn: Any,
                                                                 workdir: Path) -> None:
    child = spawn("run", "--queue-size", "1", "--submit-timeout", "0",
                  "cli_plugins:Gated", "cli_plugins:Echo")
    child.send(*[_event(n, service="gated") for n in range(1, 5)], _event("sync"))
    early = []
    while True:  # lines are submitted in order: once line 5 is answered, 1-4 were tried
        outcome = child.out_line()
        early.append(outcome)
        if outcome["line"] == 5:
            break
    rejected = [o for o in early if o["outcome"] == "rejected"]
    assert len(rejected) >= 2  # one event in the handler and one queued, at most
    assert {o["error"]["type"] for o in rejected} == {"QueueFull"}
    assert {o["error"]["kind"] for o in rejected} == {"queue_full"}
    (workdir / "gate").touch()
    code, late, _ = child.finish()
    assert code == 0
    assert len(early) + len(late) == 5
    assert [o["outcome"] for o in late] == ["succeeded"] * (4 - len(rejected))


def test_run_calls_a_tool_from_a_tool_line(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Shout")
    child.send({"tool": "shout", "request": "quiet please"})
    outcome = child.out_line()
    assert (outcome["tool"], outcome["outcome"], outcome["result"]) == (
        "shout", "succeeded", "QUIET PLEASE")


def test_run_rejects_a_call_of_an_unknown_tool(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Shout")
    child.send({"tool": "whisper", "request": 1})
    outcome = child.out_line()
    assert outcome["outcome"] == "rejected" and outcome["error"]["type"] == "ToolNotFound"


# ------------------------------------------------------------- run: plugins
def test_run_names_a_service_given_as_name_equals_spec(spawn: Any) -> None:
    child = spawn("run", "greeter=cli_plugins:Echo")
    child.send(_event("hi", service="greeter"))
    assert child.out_line()["outcome"] == "succeeded"


def test_run_without_spec_hosts_the_plugins_entry_point_group(spawn: Any) -> None:
    child = spawn("run")
    child.send(_event("hi"), {"tool": "shout", "request": "hi"})
    outcomes = _by_line([child.out_line(), child.out_line()])
    assert outcomes[1]["result"] == {"echo": "hi"}
    assert outcomes[2]["result"] == "HI"


def test_run_group_option_hosts_that_entry_point_group(spawn: Any) -> None:
    child = spawn("run", "--group", "cli_test.other")
    child.send(_event("hi", service="other"), _event("hi", service="echo"))
    outcomes = _by_line([child.out_line(), child.out_line()])
    assert outcomes[1]["outcome"] == "succeeded"
    assert outcomes[2]["error"]["type"] == "ServiceNotFound"  # the default group is not loaded


def test_run_with_an_unloadable_spec_exits_2_with_an_error(workdir: Path) -> None:
    done = _run_once(workdir, "run", "no_such_module:Thing")
    assert done.returncode == 2
    assert "cannot load plugin 'no_such_module:Thing'" in done.stderr
    assert done.stdout == ""


# ---------------------------------------------------------- run: stopping
def test_run_drains_accepted_events_at_end_of_input(spawn: Any, workdir: Path) -> None:
    child = spawn("run", "-v", "INFO", "cli_plugins:Gated", "cli_plugins:Echo")
    child.send(*[_event(n, service="gated") for n in (1, 2, 3)], _event("sync"))
    assert child.out_line()["line"] == 4  # so lines 1-3 were accepted, and wait
    child.close_stdin()
    child.err_line(lambda line: "stopping on end of input" in line)
    (workdir / "gate").touch()  # only now can the accepted events finish
    code, outcomes, _ = child.finish(close_stdin=False)
    assert code == 0
    assert sorted((o["line"], o["outcome"], o["result"]) for o in outcomes) == [
        (1, "succeeded", 1), (2, "succeeded", 2), (3, "succeeded", 3)]


def test_run_stops_with_drain_on_sigint_and_exits_zero(spawn: Any, workdir: Path) -> None:
    child = spawn("run", "-v", "INFO", "cli_plugins:Gated", "cli_plugins:Echo")
    child.send(*[_event(n, service="gated") for n in (1, 2, 3)], _event("sync"))
    assert child.out_line()["line"] == 4
    child.proc.send_signal(signal.SIGINT)  # stdin stays open: the signal alone stops it
    child.err_line(lambda line: "stopping on SIGINT" in line)
    (workdir / "gate").touch()
    code, outcomes, _ = child.finish(close_stdin=False)
    assert code == 0
    assert sorted((o["line"], o["outcome"]) for o in outcomes) == [
        (1, "succeeded"), (2, "succeeded"), (3, "succeeded")]


def _signal_thread(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to one thread of another process (Linux ``tgkill``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "tgkill"):
        pytest.skip("this libc has no tgkill")
    if libc.tgkill(pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux tgkill")
def test_run_stops_on_a_sigint_that_lands_on_another_thread(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("hi"))
    child.out_line()  # the main thread now waits for input
    pid = child.proc.pid
    others = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
    assert others
    _signal_thread(pid, others[0], signal.SIGINT)  # stdin stays open
    code, _, errors = child.finish(close_stdin=False)
    assert code == 0
    assert _status_lines(errors)[-1]["status"]["services"]["echo"]["state"] == "stopped"


# ----------------------------------------------------------- run: status
def test_run_writes_its_status_to_stderr_on_sigusr1(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("hi"))
    child.out_line()
    child.proc.send_signal(signal.SIGUSR1)
    line = child.err_line(lambda line: line.startswith("{"))
    report = json.loads(line)
    assert report["reason"] == "SIGUSR1"
    echo = report["status"]["services"]["echo"]
    assert echo["state"] == "running"
    assert echo["counters"]["succeeded"] == 1
    assert child.finish()[0] == 0


def test_run_writes_the_final_status_to_stderr_at_exit(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("hi"), _event("boom"))
    code, _, errors = child.finish()
    assert code == 0
    (final,) = _status_lines(errors)
    assert final["reason"] == "exit"
    echo = final["status"]["services"]["echo"]
    assert echo["state"] == "stopped"
    assert (echo["counters"]["succeeded"], echo["counters"]["failed"]) == (1, 1)


def test_run_writes_the_final_status_to_the_status_file(spawn: Any, workdir: Path) -> None:
    path = workdir / "status.json"
    child = spawn("run", "--status-file", str(path), "cli_plugins:Echo", "cli_plugins:Shout")
    child.send(_event("hi"), {"tool": "shout", "request": "x"})
    assert child.finish()[0] == 0
    status = json.loads(path.read_text())
    assert status["services"]["echo"]["counters"]["succeeded"] == 1
    assert status["tools"]["shout"]["counters"]["succeeded"] == 1


# ---------------------------------------------------------- run: stderr
def test_run_is_quiet_on_stderr_without_log_level(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo")
    child.send(_event("hi"), _event("boom"), _event("invalid"), "{not json")
    code, outcomes, errors = child.finish()
    assert code == 0 and len(outcomes) == 4
    assert [sorted(json.loads(line)) for line in errors] == [["reason", "status"]]


def test_run_logs_plugin_service_to_stderr_with_log_level_debug(spawn: Any) -> None:
    child = spawn("-v", "DEBUG", "run", "cli_plugins:Echo")
    child.send(_event("hi"))
    code, _, errors = child.finish()
    assert code == 0
    logs = [line for line in errors if not line.startswith("{")]
    assert any("| DEBUG" in line and "plugin_service" in line for line in logs)
    assert any("running -> stopping" in line for line in logs)


def test_run_log_lines_name_the_service_in_the_message_once(spawn: Any) -> None:
    child = spawn("-v", "INFO", "run", "cli_plugins:Echo")
    child.send(_event("hi"))
    code, _, errors = child.finish()
    assert code == 0
    logs = [line for line in errors if not line.startswith("{")]
    assert any(line.rstrip().endswith(
        "| plugin_service._service | service 'echo': running -> stopping") for line in logs), logs
    assert not any("service=echo" in line for line in logs)


def test_log_level_may_follow_the_command_name(spawn: Any) -> None:
    child = spawn("run", "cli_plugins:Echo", "--log-level", "info")
    code, _, errors = child.finish()
    assert code == 0
    assert any("| INFO" in line for line in errors)


# ----------------------------------------------------------- run: metrics
def test_run_serves_metrics_on_the_metrics_port(spawn: Any) -> None:
    pytest.importorskip("prometheus_client")
    child = spawn("run", "--metrics-port", "0", "cli_plugins:Echo")
    url = json.loads(child.err_line(lambda line: line.startswith('{"metrics"')))["metrics"]
    assert url.startswith("http://127.0.0.1:")
    child.send(_event("hi"))
    child.out_line()
    with urllib.request.urlopen(url, timeout=PROCESS_HANG) as response:
        text = response.read().decode()
    assert 'plugin_service_service_succeeded_total{service="echo"} 1.0' in text
    assert 'plugin_service_service_state{service="echo",state="running"} 1.0' in text
    # Served metrics turn the services' latency histograms on.
    assert 'plugin_service_service_handler_seconds_count{service="echo"} 1.0' in text
    assert child.finish()[0] == 0
