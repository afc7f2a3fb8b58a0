"""The WebSocket server the ``websocket`` scenarios read from, in a process of its
own (so its sending does not share the measured process's GIL).

``python -m benchmarks._wspeer``: serves on 127.0.0.1, a free port, printed as
the first line of stdout; ends when its stdin closes. A client sends
``"go COUNT PACE_US SIZE"``; the server then sends COUNT text messages, one
every PACE_US µs (0: as fast as the connection takes them), each the sender's
``time.monotonic()`` (the clock every process on the machine shares) padded to
SIZE bytes, and keeps the connection open until the client closes it.

:class:`Peer` starts and stops one from the benchmark process.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any, Optional

__all__ = ["Peer", "FRAME_BYTES"]

FRAME_BYTES = 64
#: Bound on the peer's start (a fresh interpreter importing websockets).
START_S = 30.0


def _serve_one(conn: Any) -> None:
    try:
        command, count, pace_us, size = conn.recv().split()
    except Exception:  # the client went away before asking
        return
    assert command == "go"
    pace = int(pace_us) / 1e6
    send, clock, sleep, width = conn.send, time.monotonic, time.sleep, int(size)
    for _ in range(int(count)):
        send(("%.9f" % clock()).ljust(width))
        if pace:
            sleep(pace)
    for _ in conn:  # until the client closes
        pass


def main() -> None:
    from websockets.sync.server import serve

    server = serve(_serve_one, "127.0.0.1", 0, compression=None, ping_interval=None)
    print(server.socket.getsockname()[1], flush=True)
    watcher = threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()),
                               daemon=True)
    watcher.start()
    server.serve_forever()


class Peer:
    """A running ``_wspeer`` process; ``url`` is where it serves."""

    def __init__(self) -> None:
        self._proc: Optional[subprocess.Popen[str]] = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._wspeer"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        line = _read_line(self._proc, START_S)
        self.url = "ws://127.0.0.1:%d/" % int(line)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.communicate("", timeout=10.0)  # closing stdin stops it
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _read_line(proc: "subprocess.Popen[str]", timeout: float) -> str:
    lines: list = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0].strip():
        proc.kill()
        raise RuntimeError("the WebSocket peer did not start within %.0f s" % timeout)
    return str(lines[0])


if __name__ == "__main__":
    main()
