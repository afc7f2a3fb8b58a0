"""examples/webhooks.py, served by wsgiref on a loopback port and driven over real HTTP."""
from __future__ import annotations

import http.client
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from plugin_service import (
    DispatchContext,
    Ingress,
    IngressEvent,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "webhooks.py"
TIMEOUT = 10.0


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("webhooks_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


webhooks = _load_example()


class Orders(ServicePlugin):
    """Hands every event to the test through ``seen``; one with {"hold": true}
    signals ``entered`` and waits for ``release``."""

    ingresses = (Ingress("orders", validate=lambda payload: isinstance(payload, dict)),)

    def __init__(self) -> None:
        self.seen: queue.Queue[IngressEvent] = queue.Queue()
        self.entered = threading.Event()
        self.release = threading.Event()

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> None:
        self.seen.put(event)
        if event.payload.get("hold"):
            self.entered.set()
            self.release.wait(TIMEOUT)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def orders() -> Orders:
    return Orders()


@pytest.fixture
def host(orders: Orders) -> Iterator[PluginHost]:
    host = PluginHost()
    host.add_service("orders", orders, ServiceConfig(queue_size=1))
    yield host
    orders.release.set()
    host.close()


@pytest.fixture
def server(host: PluginHost) -> Iterator[WSGIServer]:
    server = make_server("127.0.0.1", 0, webhooks.make_app(host, "orders", hooks=["orders"]),
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT)


@pytest.fixture
def running(host: PluginHost) -> PluginHost:
    host.start_all(timeout=TIMEOUT)
    return host


def request(server: WSGIServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One real HTTP request: (status, headers, JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers={
            "Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def post(server: WSGIServer, payload: Any, path: str = "/hooks/orders",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    return request(server, "POST", path, json.dumps(payload).encode(), headers)


def test_post_answers_202_with_the_correlation_id_of_the_queued_event(
        running: PluginHost, server: WSGIServer, orders: Orders) -> None:
    status, _, body = post(server, {"id": 7}, headers={"X-Event-Kind": "created",
                                                       "X-Event-Source": "shop"})
    assert status == 202
    event = orders.seen.get(timeout=TIMEOUT)
    assert body == {"correlation_id": event.correlation_id}
    assert (event.ingress, event.kind, event.source, event.payload) == (
        "orders", "created", "shop", {"id": 7})


def test_full_queue_answers_429_with_queue_full(running: PluginHost, server: WSGIServer,
                                                orders: Orders) -> None:
    assert post(server, {"hold": True})[0] == 202
    assert orders.entered.wait(TIMEOUT)  # in the handler: the queue (capacity 1) is empty
    assert post(server, {"id": 2})[0] == 202  # fills the queue
    status, headers, body = post(server, {"id": 3})
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert (body["error"]["type"], body["error"]["kind"]) == ("QueueFull", "queue_full")


def test_stopped_service_answers_503(running: PluginHost, server: WSGIServer) -> None:
    running.service("orders").stop(timeout=TIMEOUT)
    status, _, body = post(server, {"id": 1})
    assert status == 503
    assert body["error"]["type"] == "ServiceStopped"


def test_service_not_started_answers_503(host: PluginHost, server: WSGIServer) -> None:
    status, _, body = post(server, {"id": 1})
    assert status == 503
    assert body["error"]["type"] == "ServiceUnavailable"


def test_body_that_is_not_json_answers_400(running: PluginHost, server: WSGIServer) -> None:
    status, _, body = request(server, "POST", "/hooks/orders", b"{not json")
    assert status == 400
    assert body["error"]["type"] == "MalformedJSON"


def test_event_the_service_refuses_answers_400_with_invalid_event(
        running: PluginHost, server: WSGIServer) -> None:
    status, _, body = post(server, ["not", "a", "dict"])
    assert status == 400
    assert (body["error"]["type"], body["error"]["kind"]) == ("InvalidEvent", "invalid_event")


def test_unknown_path_answers_404(running: PluginHost, server: WSGIServer) -> None:
    assert post(server, {"id": 1}, path="/elsewhere")[0] == 404


def test_get_on_a_hook_answers_405(running: PluginHost, server: WSGIServer) -> None:
    status, headers, _ = request(server, "GET", "/hooks/orders")
    assert status == 405
    assert headers["Allow"] == "POST"


def test_status_path_answers_the_service_status(running: PluginHost, server: WSGIServer,
                                                orders: Orders) -> None:
    assert post(server, {"id": 1})[0] == 202
    orders.seen.get(timeout=TIMEOUT)
    status, _, body = request(server, "GET", "/status")
    assert status == 200
    assert (body["name"], body["state"], body["counters"]["enqueued"]) == (
        "orders", "running", 1)


def test_undeclared_hook_answers_404(running: PluginHost, server: WSGIServer) -> None:
    status, _, body = post(server, {"id": 1}, path="/hooks/refunds")
    assert status == 404
    assert body["error"]["type"] == "NotFound"


def test_head_status_answers_200_without_a_body(running: PluginHost,
                                                server: WSGIServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=TIMEOUT)
    try:
        connection.request("HEAD", "/status")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/json"
        assert response.read() == b""
    finally:
        connection.close()
    # The connection carried no stray body: the server still answers normally.
    assert request(server, "GET", "/status")[0] == 200


def test_deeply_nested_body_answers_400_and_the_server_goes_on(
        running: PluginHost, server: WSGIServer, orders: Orders) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    status, _, body = request(server, "POST", "/hooks/orders", deep)
    assert status == 400
    assert body["error"]["type"] == "MalformedJSON"
    assert post(server, {"id": 2})[0] == 202
    assert orders.seen.get(timeout=TIMEOUT).payload == {"id": 2}


# ------------------------------------------------- the example as a process
def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGTERM")
def test_example_drains_every_accepted_event_on_sigterm_and_exits_0() -> None:
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "0"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                [str(EXAMPLE.parents[1]), os.environ.get("PYTHONPATH", "")])})
    out: queue.Queue[str | None] = queue.Queue()
    readers = [threading.Thread(target=_read_lines, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=proc.stderr.read, daemon=True)]  # type: ignore
    for reader in readers:
        reader.start()
    try:
        banner = out.get(timeout=TIMEOUT)
        assert banner is not None and "http://127.0.0.1:" in banner
        port = int(banner.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        accepted = []
        for n in range(20):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            try:
                connection.request("POST", "/hooks/orders", body=json.dumps({"id": n}),
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                assert response.status == 202
                accepted.append(json.loads(response.read())["correlation_id"])
            finally:
                connection.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
        for reader in readers:
            reader.join(TIMEOUT)
        printed = []
        while (line := out.get(timeout=TIMEOUT)) is not None:
            printed.append(line)
        handled = [line.split()[3].rstrip(":") for line in printed
                   if line.startswith("orders webhook event ")]
        assert sorted(handled) == sorted(accepted)  # each accepted event, once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
