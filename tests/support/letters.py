"""Doubles for the dead-letter sink tests: a plugin module and a writer script run
in child processes, and in-process sinks that block or fail on demand."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, List

from support.cli import _env
from support.timing import HANG, PROCESS_HANG

#: ``letters_plugins.py``: ``Flaky`` fails every first attempt (attempt 1) and
#: returns ``{"attempt": ..., "payload": ...}`` from the second on.
PLUGINS = textwrap.dedent('''
    from plugin_service import Ingress, ServicePlugin

    class Flaky(ServicePlugin):
        ingresses = (Ingress("in"),)

        def handle_ingress(self, event, ctx):
            if event.attempt < 2:
                raise RuntimeError("first attempt fails; password=hunter2")
            return {"attempt": event.attempt, "payload": event.payload}
''')

#: ``write_letters.py DB COUNT KEEP TAG``: a host whose COUNT events (payload
#: ``{"tag": TAG, "n": i, "password": "hunter2"}``) all fail, stored in DB.
WRITER = textwrap.dedent('''
    import sys
    from plugin_service import IngressEvent, PluginHost, ServiceConfig, SQLiteDeadLetterSink
    from letters_plugins import Flaky

    db, count, keep, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
    sink = SQLiteDeadLetterSink(db, keep_payloads=keep)
    with PluginHost(dead_letter_sink=sink) as host:
        host.add_service("flaky", Flaky, ServiceConfig(fail_after=None, queue_size=count))
        host.start_all()
        futures = [host.submit("flaky", IngressEvent(
            "in", "writer", {"tag": tag, "n": n, "password": "hunter2"},
            correlation_id="%s-%d" % (tag, n))) for n in range(count)]
        for future in futures:
            future.exception(timeout=30)
    status = host.status().dead_letter_sink
    assert status.written == count, status
''')


def write_workdir(path: Path) -> Path:
    (path / "letters_plugins.py").write_text(PLUGINS)
    (path / "write_letters.py").write_text(WRITER)
    return path


def writer(workdir: Path, db: Path, count: int, keep: bool, tag: str) -> subprocess.Popen[str]:
    """A child process storing ``count`` dead letters in ``db``."""
    return subprocess.Popen(
        [sys.executable, str(workdir / "write_letters.py"), str(db), str(count),
         "1" if keep else "0", tag], cwd=workdir, env=_env(workdir),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> None:
    try:
        out, err = process.communicate(timeout=PROCESS_HANG)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, (out, err)


class BlockedSink:
    """A sink whose ``write`` waits until ``release()``; ``entered`` is set by the
    first write."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.written: List[Any] = []

    def write(self, letter: Any) -> None:
        self.entered.set()
        assert self.gate.wait(HANG), "never released"
        self.written.append(letter)

    def release(self) -> None:
        self.gate.set()


class FailingSink:
    """A sink whose first ``failures`` writes raise (with a secret in the message)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: List[float] = []
        self.written: List[Any] = []

    def write(self, letter: Any) -> None:
        import time
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            raise OSError("disk full; api_key=s3cr3t-value")
        self.written.append(letter)
