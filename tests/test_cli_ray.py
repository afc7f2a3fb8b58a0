"""``plugin-service run --ray`` and a backend that starts Ray itself, in child processes.

Each child starts (and shuts down) its own local Ray instance on 127.0.0.1, as a
user's process would: the test only puts the repository and the plugin module on
PYTHONPATH, like ``test_cli``. Skipped without Ray.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

import pytest

from plugin_service._cli import _take_back_spec, build_parser

REPO = Path(__file__).resolve().parents[1]
#: A child starts Ray (a few seconds on 2 busy cores), serves two lines and stops it.
CHILD_TIMEOUT = 120.0

PLUGINS = textwrap.dedent('''
    """Plugins for the Ray command-line tests, imported by the child and its actors."""
    import os

    from plugin_service import Ingress, ServicePlugin


    class Where(ServicePlugin):
        """Answers {"pid": <its process>, "echo": payload}; "boom" raises, "crash"
        kills its process."""

        ingresses = [Ingress("in")]

        def handle_ingress(self, event, ctx):
            if event.payload == "boom":
                raise RuntimeError("boom")
            if event.payload == "crash":
                os._exit(1)
            return {"pid": os.getpid(), "echo": event.payload}
''')


@pytest.fixture
def ray_workdir(tmp_path: Path) -> Path:
    """A directory holding the plugin module; skips the test without Ray.

    Only looks for Ray: importing it here, before ``ray_session`` sets the loopback
    switch Ray reads at import, would put the session's instance on the network."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("the Ray backend tests need the ray extra: "
                    "pip install 'plugin_service[ray]'")
    (tmp_path / "ray_cli_plugins.py").write_text(PLUGINS)
    return tmp_path


def child_env(workdir: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(workdir), str(REPO)])
    for name in ("RAY_ADDRESS", "LOGURU_LEVEL"):  # a local instance, quiet logs
        env.pop(name, None)
    return env


class Finished(NamedTuple):
    pid: int
    returncode: int
    stdout: str
    stderr: str


def run_child(args: List[str], workdir: Path, stdin: Optional[str] = None) -> Finished:
    """Run ``args`` in its own process group and return what it wrote. Afterwards
    whatever is left of that group (Ray processes a broken shutdown orphaned) is
    killed, so no test leaves a Ray instance behind."""
    child = subprocess.Popen(args, cwd=workdir, env=child_env(workdir), text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = child.communicate(stdin, timeout=CHILD_TIMEOUT)
    finally:
        child.kill()
        child.wait()
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return Finished(child.pid, child.returncode, stdout, stderr)


def json_lines(text: str) -> List[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("argv, specs, address", [
    (["run", "--ray", "mod:Plugin"], ["mod:Plugin"], ""),
    (["run", "mod:Plugin", "--ray"], ["mod:Plugin"], ""),
    (["run", "--ray", "127.0.0.1:6379", "mod:Plugin"], ["mod:Plugin"], "127.0.0.1:6379"),
    (["run", "--ray=auto", "name=mod:Plugin"], ["name=mod:Plugin"], "auto"),
    (["run", "mod:Plugin"], ["mod:Plugin"], None),
])
def test_ray_option_tells_an_address_from_a_plugin_spec(argv: List[str], specs: List[str],
                                                        address: Optional[str]) -> None:
    args = build_parser().parse_args(argv)
    _take_back_spec(args)
    assert (args.specs, args.ray) == (specs, address)


def test_run_with_ray_hosts_the_plugins_in_actor_processes(ray_workdir: Path) -> None:
    lines = "".join(json.dumps(line) + "\n" for line in [
        {"service": "where", "ingress": "in", "payload": "hello"},
        {"service": "where", "ingress": "in", "payload": "boom"},
        {"service": "where", "ingress": "in", "payload": "crash"},
    ])
    child = run_child(
        [sys.executable, "-m", "plugin_service", "run", "--ray", "ray_cli_plugins:Where"],
        ray_workdir, lines)
    # The crash fails the service, and a run whose service ended FAILED exits 1.
    assert child.returncode == 1, child.stderr
    # Every stdout line is an outcome: Ray's own notice of the crash stays off it.
    outcomes = {line["line"]: line for line in json_lines(child.stdout)}
    assert sorted(outcomes) == [1, 2, 3]
    assert outcomes[1]["outcome"] == "succeeded"
    assert outcomes[1]["result"]["echo"] == "hello"
    assert outcomes[1]["result"]["pid"] not in (child.pid, os.getpid())
    assert outcomes[2]["outcome"] == "failed"
    assert outcomes[2]["error"]["type"] == "DispatchFailed"
    assert outcomes[3]["outcome"] == "failed"
    assert "PluginCrashed" in outcomes[3]["error"]["message"]
    # Quiet on stderr: only the final status line, Ray's start-up logs included, and
    # the line that says why the exit code is 1.
    status_line, why = child.stderr.splitlines()
    assert why == "plugin-service: error: service(s) ended failed: 'where'"
    final = json.loads(status_line)
    assert final["reason"] == "exit"
    where = final["status"]["services"]["where"]
    assert where["state"] == "failed"
    assert (where["counters"]["succeeded"], where["counters"]["failed"]) == (1, 2)


FIRST_SERVICE_STOPS = textwrap.dedent('''
    import sys
    import threading

    from plugin_service import IngressEvent, PluginHost, RayBackend, ServiceConfig, errors
    from ray_cli_plugins import Where

    host = PluginHost(backend=RayBackend())
    first = host.add_service("first", Where)   # starts Ray, on this (the main) thread
    first.start(timeout=60)
    first.stop(timeout=60)
    for thread in threading.enumerate():    # the first life's worker thread has ended
        if thread.name == "first":
            thread.join(60)
    second = host.add_service("second", Where, ServiceConfig(start_timeout=5.0))
    try:
        second.start()
        print(second.submit(IngressEvent("in", "test", "ok")).result(10)["echo"])
    except errors.PluginServiceError as exc:
        print("%s: %s" % (type(exc).__name__, exc), file=sys.stderr)
    finally:
        host.close(timeout=10)
''')


def test_ray_started_by_the_backend_outlives_the_first_service(ray_workdir: Path) -> None:
    # Ray ties gcs_server and raylet to the thread that spawned them
    # (PR_SET_PDEATHSIG): started on a service's worker thread, they would die with
    # that service's first life.
    child = run_child([sys.executable, "-c", FIRST_SERVICE_STOPS], ray_workdir)
    assert child.stdout.split() == ["ok"], child.stderr[-2000:]
