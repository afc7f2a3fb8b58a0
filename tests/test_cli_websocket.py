"""``plugin-service run --websocket SERVICE:INGRESS=URL``: the real command in a
child process, connected to a WebSocket server this test runs on 127.0.0.1;
the frames it sends counted in the status, the URL's secrets kept out of what
the command writes, and the usage errors.
"""
from __future__ import annotations

import json
import queue
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("websockets")

from support.cli import _event, _run_once, _status_lines  # noqa: E402
from support.timing import PROCESS_HANG  # noqa: E402
from support.wsserver import WsServer  # noqa: E402

SECRET = "s3cr3t-Tok"


@pytest.fixture
def server() -> Iterator[WsServer]:
    peer = WsServer()
    try:
        yield peer
    finally:
        peer.close()


def _source_status(child: Any) -> Any:
    child.proc.send_signal(signal.SIGUSR1)
    line = child.err_line(lambda text: text.startswith('{"status"'))
    return json.loads(line)["status"]["sources"]["websocket-1"]


def test_a_websocket_feeds_its_service_and_the_final_status_counts_it(spawn, server):
    url = server.url + "?token=" + SECRET
    child = spawn("run", "cli_plugins:Echo", "--websocket", "echo:in=" + url)
    child.send(_event("ready"))  # answered: the signal handlers are installed
    assert child.out_line()["outcome"] == "succeeded"
    try:
        conn = server.connections.get(timeout=PROCESS_HANG)
    except queue.Empty:
        pytest.fail("the command never connected")
    assert conn.request.path == "/feed?token=" + SECRET  # sent as given
    for text in ("one", "two", "three"):
        conn.send(text)
    while _source_status(child)["submitted"] < 3:
        pass
    code, rest, errors = child.finish()
    assert (code, rest) == (0, [])  # a source's outcomes are not output lines
    final = _status_lines(errors)[-1]["status"]
    source = final["sources"]["websocket-1"]
    assert (source["service"], source["state"]) == ("echo", "stopped")
    assert (source["received"], source["submitted"], source["rejected"]) == (3, 3, 0)
    assert final["services"]["echo"]["counters"]["succeeded"] == 3 + 1
    assert not any(SECRET in line for line in errors)


@pytest.mark.parametrize(("option", "message"), [
    ("echo:in=http://127.0.0.1/", "url must be a ws:// or wss:// URL"),
    ("echo:nope=ws://127.0.0.1:9/", "undeclared ingress 'nope'"),
    ("nobody:in=ws://127.0.0.1:9/", "no service named 'nobody'"),
    ("echo=ws://bob:%s@127.0.0.1/?token=%s" % (SECRET, SECRET),
     "'echo=ws://***@127.0.0.1/?token=***' is not SERVICE:INGRESS=URL"),
])
def test_a_websocket_that_cannot_be_attached_is_a_usage_error(
        workdir: Path, option: str, message: str) -> None:
    done = _run_once(workdir, "run", "cli_plugins:Echo", "--websocket", option)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stderr


def test_run_help_names_the_websocket_option(workdir: Path) -> None:
    done = _run_once(workdir, "run", "--help")
    assert "--websocket SERVICE:INGRESS=URL" in done.stdout


def test_websocket_without_the_extra_says_what_to_install(workdir: Path) -> None:
    blocked = workdir / "websockets"  # first on the child's path: shadows the library
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('not installed')\n")
    done = _run_once(workdir, "run", "cli_plugins:Echo", "--websocket",
                     "echo:in=ws://127.0.0.1:9/")
    assert done.returncode == 2
    assert "needs websockets: pip install 'plugin_service[websocket]'" in done.stderr
    assert "Traceback" not in done.stderr
