"""The README's chat bot (under "WebSocket sources"), read from README.rst so the
two cannot drift, run as a program in a child process against a WebSocket server
this test runs on 127.0.0.1: it answers through ``send``, takes the room's close,
reconnects, answers again, and drains on SIGTERM."""
from __future__ import annotations

import queue
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("websockets")

from support.readme import readme_block  # noqa: E402
from support.timing import PROCESS_HANG  # noqa: E402
from support.wsserver import WsServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def readme_chat_bot() -> str:
    """The first code block of the README's "WebSocket sources" section."""
    return readme_block("WebSocket sources\n-----------------\n", ".. code-block:: python\n\n")


@pytest.fixture
def server() -> Iterator[WsServer]:
    peer = WsServer(path="/room")
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture
def bot(tmp_path: Path, server: WsServer) -> Iterator["subprocess.Popen[str]"]:
    script = tmp_path / "chat_bot.py"
    script.write_text(readme_chat_bot(), encoding="utf-8")
    child = subprocess.Popen([sys.executable, str(script), server.url], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=PROCESS_HANG)


def _next(items: "queue.Queue[Any]") -> Any:
    try:
        return items.get(timeout=PROCESS_HANG)
    except queue.Empty:
        pytest.fail("the chat bot did not get that far")


def test_the_readme_chat_bot_answers_reconnects_and_drains_on_sigterm(server, bot):
    room = _next(server.connections)
    room.send("hello")
    assert _next(server.received) == "bot: you said 'hello'"
    room.close(1001, "closing the room")
    again = _next(server.connections)  # it reconnected
    again.send("still there?")
    assert _next(server.received) == "bot: you said 'still there?'"
    bot.send_signal(signal.SIGTERM)
    out, err = bot.communicate(timeout=PROCESS_HANG)
    assert bot.returncode == 0, err
    assert "Traceback" not in err
