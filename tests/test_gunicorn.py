"""plugin_service under a real prefork server (issue 12, item 2).

``gunicorn --preload -w 2`` is started by each test on 127.0.0.1 (port 0: the
master reports the port it bound), driven with real HTTP requests, stopped with
SIGTERM to the master and waited for. Handlers append each event's correlation id
to a ledger file (one O_APPEND write per event), which says what was handled,
where, and how often. The unit tests of ``WorkerHost`` at the end need no server.
"""
from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import pytest
from support.timing import HANG

from plugin_service import PluginHost, errors
from plugin_service.integrations.gunicorn import QUICK_SHUTDOWN, WorkerHost

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
#: Bounds that only catch a hang: start-up, one request, the whole shutdown.
BOOT_BOUND = 60.0
REQUEST_BOUND = 30.0
STOP_BOUND = 60.0
#: Requests per test, sent by a few client threads at once so both workers serve.
REQUESTS = 40

LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+) \((\d+)\)")
BOOTING = re.compile(r"Booting worker with pid: (\d+)")


class Gunicorn:
    """One gunicorn master (and its workers), started by the test, stopped by PID."""

    def __init__(self, tmp_path: Path, *args: str, cwd: Path = TESTS) -> None:
        self.ledger = tmp_path / "ledger"
        self.stdout_path = tmp_path / "gunicorn.stdout"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS), str(EXAMPLES)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                           else []))
        env["PLUGIN_SERVICE_TEST_LEDGER"] = str(self.ledger)
        # gunicorn >= 25.1 opens a control socket in $XDG_RUNTIME_DIR (else $HOME):
        # keep each test's apart from any other gunicorn on the machine.
        env["XDG_RUNTIME_DIR"] = str(tmp_path)
        command = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
                   "-b", "127.0.0.1:0", "--graceful-timeout", "20", *args]
        self._stdout = open(self.stdout_path, "wb")
        self.process = subprocess.Popen(command, cwd=str(cwd), env=env,
                                        stdout=self._stdout, stderr=subprocess.PIPE)
        self.log: List[str] = []
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.workers: List[int] = []
        self.port = int(self.wait_for(LISTENING).group(1))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self._lines.put(raw.decode("utf-8", "replace"))
        self._lines.put(None)

    def wait_for(self, pattern: "re.Pattern[str]") -> "re.Match[str]":
        """The first log line from now on matching ``pattern`` (bounded wait)."""
        deadline = time.monotonic() + BOOT_BOUND
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "gunicorn never logged %r:\n%s" % (
                pattern.pattern, "".join(self.log))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, "gunicorn exited:\n%s" % "".join(self.log)
            self._note(line)
            found = pattern.search(line)
            if found:
                return found

    def _note(self, line: str) -> None:
        self.log.append(line)
        booted = BOOTING.search(line)
        if booted:
            self.workers.append(int(booted.group(1)))

    def post(self, payload: Any) -> Tuple[int, Dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                timeout=REQUEST_BOUND)
        try:
            connection.request("POST", "/hooks/orders", body=json.dumps(payload),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def post_many(self, count: int) -> List[Tuple[int, Dict[str, Any]]]:
        with ThreadPoolExecutor(4) as clients:
            return list(clients.map(lambda i: self.post({"id": i}), range(count)))

    def stop(self) -> int:
        """SIGTERM to the master, then wait for it to exit; its exit status."""
        os.kill(self.process.pid, signal.SIGTERM)
        code = self.process.wait(STOP_BOUND)
        self._reader.join(STOP_BOUND)
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is not None:
                self._note(line)
        return code

    def kill(self) -> None:
        """In a finally: whatever is still running of it, by PID."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_BOUND)
        for pid in self.workers:  # orphaned workers, if the master was killed
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
                    if b"gunicorn" not in cmdline.read():
                        continue
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._stdout.close()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def handled(self) -> List[Tuple[int, str]]:
        """The ledger: ``(pid, correlation id)`` per handled event."""
        if not self.ledger.exists():
            return []
        return [(int(pid), cid) for pid, cid in
                (line.split() for line in self.ledger.read_text().splitlines())]


@pytest.fixture
def gunicorn(tmp_path):
    pytest.importorskip("gunicorn")
    started: List[Gunicorn] = []

    def start(*args: str, cwd: Path = TESTS) -> Gunicorn:
        server = Gunicorn(tmp_path, *args, cwd=cwd)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.kill()


# ------------------------------------------------------------ the real server
@pytest.mark.timeout(180)
def test_with_worker_host_every_accepted_event_is_handled_exactly_once(gunicorn):
    server = gunicorn("-c", "support/gunicorn_conf.py", "support.gunicorn_apps:app")
    answers = server.post_many(REQUESTS)
    # Every handler waits for worker_exit: all these events are queued right now.
    assert server.stop() == 0
    assert [status for status, _ in answers] == [202] * REQUESTS, answers
    accepted = [body["correlation_id"] for _, body in answers]
    handled = server.handled()
    counts = Counter(cid for _, cid in handled)
    assert sorted(counts) == sorted(accepted)
    assert set(counts.values()) == {1}, counts
    assert {pid for pid, _ in handled} <= set(server.workers)
    assert len(server.workers) == 2
    assert "Exception" not in "".join(server.log), "".join(server.log)


@pytest.mark.timeout(180)
def test_a_host_started_at_import_answers_host_forked_never_202(gunicorn):
    server = gunicorn("support.gunicorn_misuse:app")
    answers = server.post_many(REQUESTS)
    assert server.stop() == 0
    for status, body in answers:
        assert status == 503, (status, body)
        error = body["error"]
        assert (error["type"], error["kind"]) == ("HostForked", "host_forked"), body
        assert "after the fork" in error["message"] and "post_fork" in error["message"]
    assert server.handled() == []  # neither the workers nor the master ran any


@pytest.mark.timeout(180)
def test_the_documented_example_config_serves_and_drains(gunicorn):
    server = gunicorn("-c", "gunicorn.conf.py", "gunicorn_app:app", cwd=EXAMPLES)
    answers = server.post_many(REQUESTS)
    assert server.stop() == 0
    assert [status for status, _ in answers] == [202] * REQUESTS, answers
    printed = Counter(re.findall(r"orders webhook event (\S+):",
                                 server.stdout_path.read_text()))
    assert sorted(printed) == sorted(body["correlation_id"] for _, body in answers)
    assert set(printed.values()) == {1}


# ---------------------------------------------------- WorkerHost, without gunicorn
def _cfg(graceful_timeout: float = 30, timeout: float = 30) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(graceful_timeout=graceful_timeout,
                                               timeout=timeout))


@pytest.fixture
def closing_hosts():
    made: List[PluginHost] = []

    def build() -> PluginHost:
        made.append(PluginHost())
        return made[-1]

    try:
        yield build, made
    finally:
        for host in made:
            host.close(timeout=HANG)


def test_worker_host_has_no_host_before_post_fork():
    hosts = WorkerHost(PluginHost)
    with pytest.raises(errors.LifecycleError, match="post_fork = hosts.post_fork"):
        hosts.host


def test_post_fork_builds_the_host_and_worker_exit_closes_it(closing_hosts):
    build, made = closing_hosts
    hosts = WorkerHost(build)
    worker = _cfg()
    hosts.post_fork(SimpleNamespace(), worker)
    assert hosts.host is made[0]
    hosts.worker_exit(SimpleNamespace(), worker)
    with pytest.raises(errors.HostClosed):
        hosts.host.call_tool("any", 1)


def test_factory_must_return_a_plugin_host():
    hosts = WorkerHost(lambda: "not a host")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return a PluginHost"):
        hosts.post_fork(SimpleNamespace(), _cfg())


def test_worker_exit_in_another_process_leaves_the_host_alone(closing_hosts, monkeypatch):
    build, made = closing_hosts
    hosts = WorkerHost(build)
    hosts.post_fork(SimpleNamespace(), _cfg())
    monkeypatch.setattr(os, "getpid", lambda: -1)  # gunicorn's master, reaping a worker
    hosts.worker_exit(SimpleNamespace(), _cfg())
    with pytest.raises(errors.HostForked):
        hosts.host
    monkeypatch.undo()
    made[0].add_tool("echo", lambda request, ctx: request)
    assert made[0].call_tool("echo", 1) == 1  # not closed


def test_drain_timeout_is_what_is_left_of_the_graceful_timeout_less_the_margin():
    hosts = WorkerHost(PluginHost, margin=1.0)
    assert hosts.drain_timeout(_cfg(20, 30).cfg) == pytest.approx(19.0, abs=0.5)
    assert hosts.drain_timeout(_cfg(20, 5).cfg) == pytest.approx(4.0, abs=0.5)
    assert hosts.drain_timeout(_cfg(20, 0).cfg) == pytest.approx(19.0, abs=0.5)
    hosts._stop_began = time.monotonic() - 15
    assert hosts.drain_timeout(_cfg(20, 30).cfg) == pytest.approx(4.0, abs=0.5)
    hosts._stop_began = time.monotonic() - 25
    assert hosts.drain_timeout(_cfg(20, 30).cfg) == 0.0
    hosts._stop_began, hosts._quick = time.monotonic(), True
    assert hosts.drain_timeout(_cfg(20, 30).cfg) == pytest.approx(QUICK_SHUTDOWN - 1.0,
                                                                  abs=0.5)


def test_post_worker_init_notes_the_stop_signal_and_still_runs_gunicorns_handler():
    hosts = WorkerHost(PluginHost)
    received = threading.Event()
    kept = {signum: signal.getsignal(signum)
            for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT)}
    signal.signal(signal.SIGTERM, lambda signum, frame: received.set())
    try:
        hosts.post_worker_init(_cfg())
        assert hosts._stop_began is None
        before = time.monotonic()
        signal.raise_signal(signal.SIGTERM)  # handled on this (the main) thread
        assert received.is_set()
        assert hosts._stop_began is not None and hosts._stop_began >= before
        assert hosts._quick is False
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


def test_worker_host_rejects_bad_arguments():
    with pytest.raises(TypeError):
        WorkerHost("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WorkerHost(PluginHost, margin=-1)
