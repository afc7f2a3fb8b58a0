"""A Ray head of a test's own: ``ray start --head`` on 127.0.0.1, in a process
group of its own, stopped by the PIDs it started (never ``ray stop``, which ends
every Ray on the machine)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Set

STARTED = "Ray runtime started"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def loopback_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """An environment in which Ray registers and connects on 127.0.0.1 only, with
    no authentication setting or Ray address of its own."""
    env = dict(os.environ if base is None else base)
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        env.pop(name, None)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _ray_command() -> List[str]:
    beside = Path(sys.executable).with_name("ray")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ray")
    if found is None:  # pragma: no cover - the ray extra installs the script
        raise RuntimeError("no `ray` command beside %s" % sys.executable)
    return [found]


def _children() -> Dict[int, Set[int]]:
    tree: Dict[int, Set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), set()).add(int(entry))
    return tree


def _pgid(pid: int) -> Optional[int]:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


class RayHead:
    """One head: ``address`` is ``127.0.0.1:PORT``; ``env`` what it ran with."""

    def __init__(self, env: Dict[str, str], num_cpus: int = 2) -> None:
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.env = env
        # Ray's socket paths must stay short: a temp dir of its own under /tmp.
        self.temp_dir = tempfile.mkdtemp(prefix="psray", dir="/tmp")
        self.output: List[str] = []
        self._started = threading.Event()
        command = _ray_command() + [
            "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            "--port=%d" % self.port, "--num-cpus=%d" % num_cpus,
            "--include-dashboard=false", "--disable-usage-stats",
            "--dashboard-agent-listen-port=%d" % free_port(),
            "--temp-dir=%s" % self.temp_dir]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if STARTED in line:
                self._started.set()
        self._started.set()  # it ended: wait_started() reports how

    def wait_started(self, timeout: float) -> None:
        if not self._started.wait(timeout) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("the Ray head did not start:\n" + "".join(self.output[-40:]))

    def pids(self) -> Set[int]:
        """The head and every process descended from it or in its group."""
        tree = _children()
        found: Set[int] = set()
        todo = [self.process.pid]
        while todo:
            pid = todo.pop()
            if pid not in found:
                found.add(pid)
                todo.extend(tree.get(pid, ()))
        found.update(pid for pids in tree.values() for pid in pids
                     if _pgid(pid) == self.process.pid)
        return found

    def stop(self, grace: float = 15.0) -> Set[int]:
        """SIGTERM every process of this head, SIGKILL what is left after
        ``grace``; returns the PIDs still alive after that (none, normally)."""
        mine = self.pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in mine:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._alive(mine):
                self.process.poll()  # reap the head itself
                time.sleep(0.1)
            if not self._alive(mine):
                break
        self.process.poll()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return self._alive(mine)

    @staticmethod
    def _alive(pids: Set[int]) -> Set[int]:
        alive = set()
        for pid in pids:
            try:
                with open("/proc/%d/stat" % pid) as stat:
                    if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                        alive.add(pid)
            except OSError:
                pass
        return alive
