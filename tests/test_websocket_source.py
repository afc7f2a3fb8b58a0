"""``WebSocketSource`` against a real ``websockets`` server on 127.0.0.1 (the test
extra): frames in order as events, reconnects, close and error notices, replies
through ``send``, the dead-peer keepalive, back-pressure and the drop policies,
``close()`` during a burst, and secrets kept out of what it shows.

The servers are ``support.wsserver``'s; every wait ends on an event, a queue or
``wait_until`` over public status, bounded by ``HANG``.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
import tracemalloc
from typing import Any, Iterator, List

import pytest

pytest.importorskip("websockets")

from support.checks import assert_invariants, wait_until  # noqa: E402
from support.doubles import INGRESS, Recorder  # noqa: E402
from support.sources import assert_source_invariant, settled  # noqa: E402
from support.timing import HANG, LONG  # noqa: E402
from support.wsserver import SilentServer, WsServer, drop  # noqa: E402

from plugin_service import (  # noqa: E402
    Ingress,
    ReconnectPolicy,
    ServiceConfig,
    SourceState,
    WebSocketSource,
    errors,
)

#: Reconnect at once (a test of the backoff sets its own).
QUICK = ReconnectPolicy(initial=0.01, multiplier=1.0, max=0.01, jitter=0.0)
ALL_KINDS = ("websocket_text", "websocket_binary", "websocket_close", "websocket_error")
SECRET = "s3cr3t-Tok"


class Feed(Recorder):
    """Records the events of ingress ``in``, declaring ``kinds`` (empty: any)."""

    def __init__(self, kinds: Any = ()) -> None:
        super().__init__()
        self.ingresses = [Ingress(INGRESS, event_kinds=kinds)]


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server() -> Iterator[WsServer]:
    peer = WsServer(compression=None)
    try:
        yield peer
    finally:
        peer.close()


def _attach(host: Any, plugin: Any, url: str, *, overflow: str = "block",
            reconnect: Any = QUICK, queue_size: int = 32, **options: Any) -> Any:
    host.add_service("svc", plugin, ServiceConfig(queue_size=queue_size)).start(timeout=HANG)
    return host.add_source("ws", WebSocketSource(url, **options), service="svc",
                           ingress=INGRESS, overflow=overflow, reconnect=reconnect)


def _payloads(plugin: Recorder, count: int) -> List[Any]:
    wait_until(lambda: len(plugin.payloads) >= count, what="%d events handled" % count)
    return list(plugin.payloads)


# ------------------------------------------------------------ frames as events
def test_text_and_binary_frames_arrive_in_order_as_their_kinds(host, server):
    plugin = Feed()
    _attach(host, plugin, server.url)
    conn = server.next_connection()
    sent = [("t%d" % i) if i % 3 else b"b%d" % i for i in range(60)]
    for message in sent:
        conn.send(message)
    assert _payloads(plugin, 60) == sent
    kinds = [event.kind for event in plugin.events]
    assert kinds == ["websocket_binary" if isinstance(m, bytes) else "websocket_text"
                     for m in sent]
    assert {(event.ingress, event.source) for event in plugin.events} == {(INGRESS, "ws")}


def test_the_handshake_sends_the_headers_and_offers_the_subprotocols(host):
    peer = WsServer(subprotocols=["chat.v2"])
    try:
        plugin = Feed()
        _attach(host, plugin, peer.url, headers={"Authorization": "Bearer " + SECRET},
                subprotocols=("chat.v1", "chat.v2"))
        conn = peer.next_connection()
        assert conn.request.headers["Authorization"] == "Bearer " + SECRET
        assert conn.request.headers["Sec-WebSocket-Protocol"] == "chat.v1, chat.v2"
        assert conn.subprotocol == "chat.v2"
    finally:
        peer.close()


def test_a_dropped_connection_reconnects_after_the_backoff_and_later_frames_arrive(
        host, server):
    plugin = Feed(("websocket_text",))
    backoff = ReconnectPolicy(initial=0.3, multiplier=2.0, max=1.0, jitter=0.0)
    handle = _attach(host, plugin, server.url, reconnect=backoff)
    first = server.next_connection()
    first.send("before")
    assert _payloads(plugin, 1) == ["before"]
    dropped_at = time.monotonic()
    drop(first)
    second = server.next_connection()
    assert time.monotonic() - dropped_at >= 0.3  # the backoff was waited
    second.send("after")
    assert _payloads(plugin, 2) == ["before", "after"]
    status = handle.status()
    assert (status.state, status.reconnects) == (SourceState.OPEN, 1)
    assert "ConnectionError" in status.last_error.message


def test_a_close_from_the_peer_is_a_websocket_close_event_then_a_reconnect(host, server):
    plugin = Feed(ALL_KINDS)
    handle = _attach(host, plugin, server.url)
    server.next_connection().close(4000, "bye now")
    notice = plugin.entered()
    assert (notice.kind, notice.payload) == ("websocket_close",
                                             {"code": 4000, "reason": "bye now"})
    server.next_connection().send("again")
    assert plugin.entered().payload == "again"
    assert handle.status().reconnects == 1


def test_a_lost_connection_is_a_websocket_error_event_with_its_redacted_reason(host, server):
    plugin = Feed(ALL_KINDS)
    _attach(host, plugin, server.url + "?token=" + SECRET)
    drop(server.next_connection())
    notice = plugin.entered()
    assert notice.kind == "websocket_error"
    assert notice.payload["error"] == "ConnectionClosedError"
    assert "no close frame" in notice.payload["message"]
    server.next_connection()  # and it reconnects


def test_no_notice_is_submitted_to_an_ingress_that_does_not_declare_its_kind(host, server):
    plugin = Feed(("websocket_text",))
    handle = _attach(host, plugin, server.url)
    server.next_connection().close()
    drop(server.next_connection())
    server.next_connection().send("third")
    assert plugin.entered().payload == "third"
    status = handle.status()
    assert (status.received, status.rejected, status.reconnects) == (1, 0, 2)
    assert host.service("svc").status().counters.rejected == 0


# ------------------------------------------------------------------- replies
class ChatBot(Feed):
    """Answers every text message through the source it came from."""

    def __init__(self, host: Any) -> None:
        super().__init__()
        self.host = host

    def behave(self, event, ctx):
        reply = ("re: " + event.payload) if event.kind == "websocket_text" else event.payload[::-1]
        self.host.source(event.source).send(reply)


def test_send_from_a_handler_reaches_the_server_as_text_or_binary(host, server):
    _attach(host, ChatBot(host), server.url)
    conn = server.next_connection()
    conn.send("hello")
    conn.send(b"\x01\x02")
    assert server.received.get(timeout=HANG) == "re: hello"
    assert server.received.get(timeout=HANG) == b"\x02\x01"


def test_send_refuses_what_is_neither_text_nor_bytes(host, server):
    handle = _attach(host, Feed(), server.url)
    server.next_connection()
    wait_until(lambda: handle.status().state is SourceState.OPEN)
    with pytest.raises(TypeError, match="str .* or bytes"):
        handle.send({"not": "a frame"})


def test_send_without_a_connection_raises_source_unavailable(host, unused_port):
    handle = _attach(host, Feed(), "ws://127.0.0.1:%d/" % unused_port,
                     reconnect=ReconnectPolicy(initial=30.0, jitter=0.0))
    wait_until(lambda: handle.status().state is SourceState.BACKOFF)
    with pytest.raises(errors.SourceUnavailable) as raised:
        handle.send("anyone?")
    assert (raised.value.source, raised.value.state) == ("ws", SourceState.BACKOFF)
    assert "ConnectionRefusedError" in handle.status().last_error.message


# ---------------------------------------------------------------- dead peers
def test_a_silent_peer_is_detected_by_the_ping_timeout_and_reconnected(host):
    peer = SilentServer()
    try:
        plugin = Feed(ALL_KINDS)
        handle = _attach(host, plugin, peer.url, ping_interval=0.1, ping_timeout=0.1)
        # Noticed after ping_interval + ping_timeout + close_timeout (2 s).
        notice = plugin.entered(timeout=LONG)
        assert notice.kind == "websocket_error"
        assert "keepalive ping timeout" in notice.payload["message"]
        wait_until(lambda: peer.accepts >= 2, what="a second connection")
        assert handle.status().reconnects >= 1
    finally:
        peer.close()


# ------------------------------------------------------ overflow and memory
FRAMES = 20_000
FRAME = 16 * 1024  # bytes: 320 MB in all, far more than the kernel's socket buffers


class Slow(Feed):
    """Takes a while per event, keeps only its frame's number (not its 16 KiB),
    and samples how far ahead of it the server and the source are."""

    def __init__(self, sender: "Sender") -> None:
        super().__init__()
        self.sender = sender
        self.handle: Any = None
        self.numbers: List[int] = []
        self.server_lead = 0
        self.host_held = 0

    def handle_ingress(self, event, ctx):
        self.numbers.append(int(event.payload[:8]))
        handled = len(self.numbers)
        self.server_lead = max(self.server_lead, self.sender.sent - handled)
        if handled % 50 == 0:
            self.host_held = max(self.host_held, self.handle.status().received - handled)
        time.sleep(0.0001)


class Sender(threading.Thread):
    """Sends ``count`` binary frames, each numbered in its first 8 bytes, as fast
    as the connection takes them; ``sent`` counts those sent so far."""

    def __init__(self, conn: Any, count: int, size: int = 8, first: int = 0) -> None:
        super().__init__(name="test-ws-sender", daemon=True)
        self.conn, self.count, self.size, self.first = conn, count, size, first
        self.sent = 0
        self.error: Any = None

    def run(self) -> None:
        pad = bytes(max(0, self.size - 8))
        try:
            for index in range(self.count):
                self.conn.send(b"%08d" % (self.first + index) + pad)
                self.sent = index + 1
        except Exception as exc:  # the test closed the host mid-burst
            self.error = exc


def _numbers(payloads: List[bytes]) -> List[int]:
    return [int(payload[:8]) for payload in payloads]


def test_block_handles_every_frame_once_while_back_pressure_holds_the_server(host, server):
    sender = Sender(None, FRAMES, FRAME)
    plugin = Slow(sender)
    tracemalloc.start()
    try:
        plugin.handle = _attach(host, plugin, server.url, queue_size=8, ping_interval=None)
        sender.conn = server.next_connection()
        tracemalloc.reset_peak()
        sender.start()
        wait_until(lambda: len(plugin.numbers) == FRAMES, timeout=120.0,
                   what="every frame handled")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sender.join(HANG)
    assert plugin.numbers == list(range(FRAMES))  # each once, in order
    # Without back-pressure the server would have sent them all (320 MB) almost at
    # once; it stayed within the kernel's socket buffers of the handler.
    assert plugin.server_lead < FRAMES // 4, plugin.server_lead
    # The host held its queue, the event in flight and the one being submitted;
    # its memory stayed far below the 320 MB that went through it.
    assert plugin.host_held <= 8 + 2, plugin.host_held
    assert peak < 16 * 1024 * 1024, peak
    status = plugin.handle.status()
    assert (status.received, status.submitted, status.dropped) == (FRAMES, FRAMES, 0)


def _burst_into_a_held_handler(host, server, gates, overflow: str, count: int) -> Any:
    """Frame 0 held in the handler, then ``count - 1`` more read by the source."""
    gate = gates.new()

    class Held(Feed):
        def behave(self, event, ctx):
            gate.wait(HANG)

    plugin = Held()
    handle = _attach(host, plugin, server.url, overflow=overflow, queue_size=4)
    conn = server.next_connection()
    Sender(conn, 1).run()
    assert _numbers([plugin.entered().payload]) == [0]
    Sender(conn, count, first=1).run()
    wait_until(lambda: handle.status().received == count + 1, what="every frame read")
    assert_source_invariant(handle.status())
    gate.set()
    return plugin, handle


def test_drop_newest_counts_what_found_no_room_and_the_invariants_hold(host, server, gates):
    plugin, handle = _burst_into_a_held_handler(host, server, gates, "drop_newest", 200)
    status = settled(handle, 201)
    assert (status.submitted, status.dropped, status.rejected) == (5, 196, 0)
    service = host.service("svc")
    wait_until(lambda: service.status().counters.succeeded == 5)
    assert _numbers(plugin.payloads) == [0, 1, 2, 3, 4]  # the first that found room
    assert_invariants(service.status())


def test_drop_oldest_withdraws_the_oldest_queued_and_the_invariants_hold(host, server, gates):
    plugin, handle = _burst_into_a_held_handler(host, server, gates, "drop_oldest", 200)
    status = settled(handle, 201)
    assert (status.submitted, status.dropped, status.rejected) == (201, 0, 0)
    service = host.service("svc")
    wait_until(lambda: service.status().counters.succeeded == 5)
    assert _numbers(plugin.payloads) == [0, 197, 198, 199, 200]  # the newest kept
    counters = service.status().counters
    assert (counters.enqueued, counters.dropped) == (201, 196)
    assert_invariants(service.status())


def test_close_during_a_burst_loses_nothing_that_was_read(make_host, server):
    host = make_host()
    sender = Sender(None, 50_000, 64)
    plugin = Feed()
    handle = _attach(host, plugin, server.url, queue_size=16)
    sender.conn = server.next_connection()
    sender.start()
    wait_until(lambda: len(plugin.payloads) >= 500, what="the burst under way")
    host.close(timeout=HANG)
    sender.join(HANG)
    status = handle.status()
    assert status.state is SourceState.STOPPED
    assert status.received == status.submitted + status.dropped + status.rejected
    counters = host.service("svc").status().counters
    assert counters.enqueued == status.submitted
    assert counters.succeeded + counters.dropped == status.submitted
    # What was handled is every frame from the first on, none skipped.
    assert _numbers(plugin.payloads) == list(range(counters.succeeded))
    assert status.received < 50_000  # it was a burst still under way


# ----------------------------------------------------------------- secrets
def test_the_url_is_shown_without_its_credentials_or_query_values(server):
    source = WebSocketSource(server.url.replace("ws://", "ws://bob:%s@" % SECRET)
                             + "?token=%s&room=7" % SECRET)
    assert SECRET not in repr(source) and SECRET not in source.url
    assert source.url.startswith("ws://***@127.0.0.1:")
    assert source.url.endswith("/feed?token=***&room=***")


def test_errors_and_library_logs_carry_no_secret(host, unused_port, caplog):
    caplog.set_level(logging.DEBUG, logger="websockets")
    peer = WsServer(compression=None)
    try:
        plugin = Feed()
        url = peer.url.replace("ws://", "ws://bob:%s@" % SECRET) + "?sig=" + SECRET
        handle = _attach(host, plugin, url, headers=[("X-Room-Pass", SECRET)])
        conn = peer.next_connection()
        conn.send("frame with " + SECRET)
        assert plugin.entered().payload == "frame with " + SECRET
        conn.close(4000, SECRET)  # a close reason is the peer's, like a frame
        wait_until(lambda: handle.status().last_error is not None)
    finally:
        peer.close()
    client_records = [r for r in caplog.records if r.name == "websockets.client"]
    assert any("GET /feed?sig=***" in r.getMessage() for r in client_records)
    assert any("TEXT [" in r.getMessage() for r in client_records)  # frames: length only
    for record in client_records:
        assert SECRET not in record.getMessage()
    assert SECRET not in str(handle.status().last_error)
    assert SECRET not in repr(host.status().to_dict())


def test_a_url_that_is_not_websocket_is_refused_at_construction():
    with pytest.raises(ValueError, match="ws:// or wss://"):
        WebSocketSource("http://127.0.0.1/?token=" + SECRET)
    with pytest.raises(ValueError, match="ping_timeout"):
        WebSocketSource("ws://127.0.0.1/", ping_timeout=-1)


@pytest.mark.parametrize(("url", "shown"), [
    ("wss://h.example/room#frag-" + SECRET, "wss://h.example/room"),
    ("ws://h.example/?" + SECRET + "&a=1", "ws://h.example/?***&a=***"),
    ("ws://[::1/?token=" + SECRET, "ws://***"),  # unparsable: only its scheme
])
def test_shown_url_drops_the_fragment_and_survives_a_broken_url(url, shown):
    from plugin_service._redact import shown_url

    assert shown_url(url) == shown
