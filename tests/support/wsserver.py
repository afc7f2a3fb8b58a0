"""WebSocket peers for the tests of ``WebSocketSource``, on 127.0.0.1 port 0.

``WsServer``: the ``websockets`` library's synchronous server in a thread. Each
connection it accepts is put on ``connections`` (the test sends on it, closes it
or drops it from its own thread); every message a client sends is put on
``received``. ``SilentServer``: a raw TCP server that completes the opening
handshake and then neither reads nor writes, a dead peer for the keepalive.
Both stop in ``close()`` (the fixtures call it), every thread joined.
"""
from __future__ import annotations

import base64
import hashlib
import queue
import socket
import threading
from typing import Any, List, Optional

from support.timing import HANG

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WsServer:
    """The library's server; ``url`` is ``ws://127.0.0.1:<port>/<path>``."""

    def __init__(self, path: str = "/feed", **options: Any) -> None:
        from websockets.sync.server import serve

        self.connections: "queue.Queue[Any]" = queue.Queue()
        self.received: "queue.Queue[Any]" = queue.Queue()
        self.requests: "queue.Queue[Any]" = queue.Queue()  # each handshake's request
        options.setdefault("ping_interval", None)
        self._opened: List[Any] = []  # every connection, closed by close()
        self._server = serve(self._handle, "127.0.0.1", 0, **options)
        port = self._server.socket.getsockname()[1]
        self.url = "ws://127.0.0.1:%d%s" % (port, path)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="test-ws-server", daemon=True)
        self._thread.start()

    def _handle(self, conn: Any) -> None:
        self.requests.put(conn.request)
        self.connections.put(conn)
        self._opened.append(conn)
        try:
            for message in conn:
                self.received.put(message)
        except Exception:  # a dropped connection: the test dropped it
            pass

    def next_connection(self) -> Any:
        """The next connection a client opens (fails the test after ``HANG``)."""
        return self.connections.get(timeout=HANG)

    def close(self) -> None:
        """Stop serving and end every connection. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(HANG)
        # websockets before 16 leaves the connections open (their threads are
        # not daemons): end each, without waiting for a closing handshake.
        for conn in self._opened:
            drop(conn)


def drop(conn: Any) -> None:
    """End ``conn``'s TCP connection with no close frame (a peer that vanished)."""
    try:
        conn.socket.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class SilentServer:
    """Accepts, answers the opening handshake, then goes silent: no pong, ever."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = "ws://127.0.0.1:%d/" % self._listener.getsockname()[1]
        self.accepts = 0  # connections handshaken so far
        self._stop = threading.Event()
        self._sockets: List[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="test-silent-server",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:  # the accept timed out, or close() closed the listener
                continue
            self._sockets.append(sock)
            sock.settimeout(HANG)
            sock.sendall(_handshake_response(_read_request(sock)))
            self.accepts += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(HANG)
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _handshake_response(request: bytes) -> bytes:
    key: Optional[str] = None
    for line in request.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(((key or "") + _GUID).encode()).digest()).decode()
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode()
