"""Joining a real cluster: a Ray head of the test's own, started with ``ray start``
on 127.0.0.1, joined by address from a real driver process, and stopped by the
PIDs it started.

Ray 2.60's ``ray start`` turns token authentication on, and a driver joining by
address sent no token unless ``RAY_AUTH_MODE=token`` was set before Ray was
imported: the join failed after 20 s with a bare ``ConnectionError``. With the
token given (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) the backend now joins;
without it the join fails with ``BackendUnavailable`` naming what to set.
"""
from __future__ import annotations

import importlib.util
import json
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from support.rayhead import RayHead, loopback_env

from plugin_service import RayBackend, errors

# Ray is never imported here: the session's local instance (conftest.py) must be
# the first import, after RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0. The drivers import it.
_RAY = importlib.util.find_spec("ray")
if _RAY is None:
    pytest.skip("the Ray backend tests need the ray extra: pip install 'plugin_service[ray]'",
                allow_module_level=True)
pytestmark = pytest.mark.timeout(300)

#: Whether this Ray has token authentication at all (2.49, the minimum, has none).
HAS_TOKEN_AUTH = any((Path(where) / "_private" / "authentication").is_dir()
                     for where in (_RAY.submodule_search_locations or ()))

DRIVER = textwrap.dedent('''
    import json, os, sys
    if os.environ.get("IMPORT_RAY_FIRST"):
        import ray  # noqa: F401 - a host that imported Ray itself, before the backend
    from plugin_service import Ingress, IngressEvent, PluginHost, RayBackend, ServicePlugin, errors


    def where():
        import ray
        return {"gcs": ray.get_runtime_context().gcs_address, "pid": os.getpid()}


    class WhereAmI(ServicePlugin):
        ingresses = [Ingress("where")]

        def handle_ingress(self, event, ctx):
            return where()


    def where_tool(request, ctx):
        return where()


    try:
        with PluginHost(backend=RayBackend(address=sys.argv[1])) as host:
            service = host.add_service("where", WhereAmI)
            host.add_tool("where", where_tool, remote=True)
            service.start(timeout=120)
            answer = service.submit(IngressEvent("where", "test")).result(timeout=120)
            tool = host.call_tool("where", None, timeout=120)
            status = service.status()
        print(json.dumps({"service": answer, "tool": tool, "driver": os.getpid(),
                          "mode": os.environ.get("RAY_AUTH_MODE"),
                          "succeeded": status.counters.succeeded}))
    except errors.BackendUnavailable as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc),
                          "address": exc.address, "kind": exc.kind.value,
                          "connection_error": isinstance(exc, ConnectionError)}))
''')


@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_hex(24)


@pytest.fixture(scope="module")
def head(token: str) -> Iterator[RayHead]:
    env = loopback_env()
    env["RAY_AUTH_TOKEN"] = token  # the head's token (no ~/.ray/auth_token written)
    started = RayHead(env)
    try:
        started.wait_started(timeout=120)
        yield started
    finally:
        left = started.stop()
    assert not left, "processes of the test's Ray head still alive: %s" % sorted(left)


def _drive(tmp_path: Path, head: RayHead, **env_extra: str) -> Dict[str, Any]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    home = tmp_path / "home"  # no ~/.ray/auth_token of the machine's
    home.mkdir(exist_ok=True)
    env = loopback_env()
    env.update(HOME=str(home), **env_extra)
    done = subprocess.run([sys.executable, str(script), head.address], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=240)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines, (done.returncode, done.stdout, done.stderr[-3000:])
    result: Dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = done.stderr
    return result


def _ran_on(result: Dict[str, Any], head: RayHead) -> None:
    assert "error" not in result, result.get("message")
    assert result["service"]["gcs"] == head.address  # the actor is on that cluster
    assert result["tool"]["gcs"] == head.address  # and so is the remote tool's task
    assert result["service"]["pid"] != result["driver"] != result["tool"]["pid"]
    assert result["succeeded"] == 1


def test_joins_an_authenticated_head_with_the_token_in_the_environment(
        tmp_path: Path, head: RayHead, token: str) -> None:
    result = _drive(tmp_path, head, RAY_AUTH_TOKEN=token)
    _ran_on(result, head)
    if HAS_TOKEN_AUTH:
        assert result["mode"] == "token"  # set for the driver, before Ray read it


def test_joins_with_a_token_file_when_ray_was_imported_first(
        tmp_path: Path, head: RayHead, token: str) -> None:
    path = tmp_path / "cluster-token"
    path.write_text(token + "\n")
    result = _drive(tmp_path, head, RAY_AUTH_TOKEN_PATH=str(path), IMPORT_RAY_FIRST="1")
    _ran_on(result, head)


@pytest.mark.skipif(not HAS_TOKEN_AUTH, reason="this Ray has no token authentication")
def test_joining_without_the_token_raises_backend_unavailable_naming_what_to_set(
        tmp_path: Path, head: RayHead, token: str) -> None:
    # Ray retries the join about once a second; 3 tries keep the test short.
    result = _drive(tmp_path, head, RAY_NUM_REDIS_GET_RETRIES="3")
    assert result["error"] == "BackendUnavailable", result
    assert result["connection_error"] and result["kind"] == "backend_unavailable"
    assert result["address"] == head.address
    message = result["message"]
    assert head.address in message
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE=token"):
        assert name in message
    assert token not in message and token not in result["stderr"]


# --------------------------------------------- what the backend refuses at once
@pytest.mark.parametrize("option", ["max_concurrency", "concurrency_groups",
                                    "allow_out_of_order_execution"])
def test_actor_options_that_would_break_serial_dispatch_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        RayBackend(actor_options={option: 4, "num_cpus": 1})


def test_other_actor_options_are_kept() -> None:
    backend = RayBackend(actor_options={"num_cpus": 1, "memory": 10 ** 8})
    assert backend.actor_options == {"num_cpus": 1, "memory": 10 ** 8}


def test_a_join_error_says_whether_a_token_was_sent() -> None:
    from plugin_service._ray.cluster import join_error

    without = join_error("10.0.0.1:6379", None, ConnectionError("Failed to connect"))
    wrong = join_error("10.0.0.1:6379", "token", ConnectionError("Failed to connect"))
    for error in (without, wrong):
        assert isinstance(error, errors.BackendUnavailable) and isinstance(error, ConnectionError)
        assert error.address == "10.0.0.1:6379" and "Failed to connect" in str(error)
    assert "give this process its token in RAY_AUTH_TOKEN" in str(without)
    assert "is the cluster's" in str(wrong) and "give this process" not in str(wrong)


def test_a_blank_token_file_is_no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plugin_service._ray.cluster import prepare_auth

    blank = tmp_path / "blank-token"
    blank.write_text("\n  \n")
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(blank))
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # as before Ray is imported
    assert prepare_auth("127.0.0.1:1") is None  # no mode set for a blank file
    assert "RAY_AUTH_MODE" not in __import__("os").environ
