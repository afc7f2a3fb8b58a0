"""Running ``plugin-service`` (``python -m plugin_service``) in a child process with real
stdin, stdout and stderr pipes: the plugin module the children import, and ``Child``.

Tests synchronize on what the child writes (outcome lines on stdout, log and status
lines on stderr), never on sleeps; a wait on the child is bounded by ``PROCESS_HANG``.
The ``workdir`` and ``spawn`` fixtures (``conftest.py``) are built on
:func:`write_workdir` and :class:`Child`; every child ``spawn`` starts is killed in
teardown.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.timing import PROCESS_HANG

REPO = Path(__file__).resolve().parents[2]

PLUGINS = textwrap.dedent('''
    """Plugins for the command-line tests, imported by the child as cli_plugins."""
    import os
    import pathlib
    import sys
    import time

    from plugin_service import Ingress, ServicePlugin, ToolPlugin


    class Echo(ServicePlugin):
        """Answers {"echo": payload}; "boom" raises, "invalid" is refused at submit."""

        ingresses = [Ingress("in", validate=lambda payload: payload != "invalid")]

        def handle_ingress(self, event, ctx):
            if event.payload == "boom":
                raise RuntimeError("boom")
            return {"echo": event.payload}


    class Gated(ServicePlugin):
        """Each event waits until the gate file exists, then answers its payload."""

        ingresses = [Ingress("in")]

        def handle_ingress(self, event, ctx):
            gate = pathlib.Path(os.environ["CLI_TEST_GATE"])
            deadline = time.monotonic() + 30
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.005)
            return event.payload


    class Stuck(ServicePlugin):
        """Never answers on its own: returns once the runtime cancels it."""

        ingresses = [Ingress("in")]

        def handle_ingress(self, event, ctx):
            ctx.wait(30)
            return "too late"


    class Wedged(ServicePlugin):
        """Writes "wedged <payload>" to stderr, then waits (ignoring cancellation)
        in a function of its own until the gate file exists; answers "unwedged"."""

        ingresses = [Ingress("in")]

        def handle_ingress(self, event, ctx):
            print("wedged %s" % event.payload, file=sys.stderr, flush=True)
            return self.wait_for_the_gate_file()

        def wait_for_the_gate_file(self):
            gate = pathlib.Path(os.environ["CLI_TEST_GATE"])
            deadline = time.monotonic() + 30
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.005)
            return "unwedged"


    class Opaque(ServicePlugin):
        """Answers something JSON cannot carry."""

        ingresses = [Ingress("in")]

        def handle_ingress(self, event, ctx):
            return {1, 2} if event.payload == "set" else object()


    class Blocker(ServicePlugin):
        """Writes "entered <payload>" to stderr, then waits until it is cancelled
        (a forced stop) and answers "cancelled"."""

        ingresses = [Ingress("in")]

        def handle_ingress(self, event, ctx):
            print("entered %s" % event.payload, file=sys.stderr, flush=True)
            return "cancelled" if ctx.wait(60) else "not cancelled"


    class WontStart(ServicePlugin):
        """Its start() raises: the service ends FAILED before taking an event."""

        ingresses = [Ingress("in")]

        def start(self):
            raise RuntimeError("no database")

        def handle_ingress(self, event, ctx):
            return None


    class Shout(ToolPlugin):
        def invoke(self, request, ctx):
            return str(request).upper()


    class StuckTool(ToolPlugin):
        """Ignores cancellation for a minute (a socket read with no timeout)."""

        def invoke(self, request, ctx):
            print("tool entered %s" % request, file=sys.stderr, flush=True)
            time.sleep(60)
            return "late"
''')

ENTRY_POINTS = textwrap.dedent('''
    [plugin_service.plugins]
    echo = cli_plugins:Echo
    shout = cli_plugins:Shout

    [cli_test.other]
    other = cli_plugins:Echo
''')


def write_workdir(path: Path) -> Path:
    """Fill ``path`` with the plugin module and a distribution declaring entry points."""
    (path / "cli_plugins.py").write_text(PLUGINS)
    dist = path / "cli_test_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cli-test-plugins\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return path


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(workdir), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["CLI_TEST_GATE"] = str(workdir / "gate")
    env.pop("LOGURU_LEVEL", None)
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "plugin_service", *args]


def _event(payload: Any, service: str = "echo", **fields: Any) -> dict[str, Any]:
    return {"service": service, "ingress": "in", "kind": "test", "source": "pytest",
            "payload": payload, **fields}


class Child:
    """A running ``plugin-service``: write lines to its stdin, read its stdout and
    stderr line by line with a timeout (reader threads feed two queues)."""

    def __init__(self, args: tuple[str, ...], workdir: Path) -> None:
        self.proc = subprocess.Popen(
            _command(*args), cwd=workdir, env=_env(workdir), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._out: queue.Queue[str | None] = queue.Queue()
        self._err: queue.Queue[str | None] = queue.Queue()
        self._readers = [self._reader(self.proc.stdout, self._out),
                         self._reader(self.proc.stderr, self._err)]

    @staticmethod
    def _reader(stream: Any, lines: queue.Queue[str | None]) -> threading.Thread:
        def read() -> None:
            for line in stream:
                lines.put(line)
            lines.put(None)
        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def send(self, *items: Any) -> None:
        assert self.proc.stdin is not None
        for item in items:
            self.proc.stdin.write(item if isinstance(item, str) else json.dumps(item))
            self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def out_line(self) -> dict[str, Any]:
        """The next outcome line; fails if stdout ends or stays silent."""
        line = self._out.get(timeout=PROCESS_HANG)
        assert line is not None, "stdout closed early"
        outcome: dict[str, Any] = json.loads(line)
        return outcome

    def err_line(self, wanted: Callable[[str], bool]) -> str:
        """Skip stderr lines until one that ``wanted`` accepts."""
        deadline = time.monotonic() + PROCESS_HANG
        while True:
            line = self._err.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, "stderr closed before the expected line"
            if wanted(line):
                return line

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def finish(self, close_stdin: bool = True) -> tuple[int, list[dict[str, Any]], list[str]]:
        """Wait for exit: the exit code, the remaining stdout lines (parsed) and
        the remaining stderr lines."""
        if close_stdin:
            self.close_stdin()
        code = self.proc.wait(timeout=PROCESS_HANG)
        for reader in self._readers:
            reader.join(timeout=PROCESS_HANG)
        return code, [json.loads(line) for line in _drain(self._out)], _drain(self._err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=PROCESS_HANG)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def _drain(lines: queue.Queue[str | None]) -> list[str]:
    found: list[str] = []
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return found
        if line is not None:
            found.append(line)


def _run_once(workdir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(*args), cwd=workdir, env=_env(workdir), input=stdin,
                          capture_output=True, text=True, timeout=PROCESS_HANG,
                          check=False)


def _status_lines(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith('{"status"')]


def _by_line(outcomes: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {outcome["line"]: outcome for outcome in outcomes}

