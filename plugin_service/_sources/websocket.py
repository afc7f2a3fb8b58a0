"""``WebSocketSource``: a WebSocket client connection as a host-owned event source,
on the synchronous client of the ``websockets`` library (the ``websocket`` extra).

One connection per source. The library's own reader thread parses frames into a
small buffer (``max_queue`` messages, plus what one socket read held); the source's
thread takes them out one at a time, so while the host holds the source back
(``overflow="block"``, a service that is not running) that buffer fills, the
library stops reading the socket, and TCP's window makes the peer's sends block.
"""
from __future__ import annotations

import logging
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from .. import errors
from .._checks import non_negative
from .._events import IngressEvent
from .._guarded import failure_log, type_name
from .._redact import REDACTED, sanitize, shown_url
from .base import IngressSource, SourceContext
from .status import SourceState

__all__ = ["WebSocketSource", "TEXT", "BINARY", "CLOSE", "ERROR"]

#: The event kinds a ``WebSocketSource`` submits.
TEXT = "websocket_text"
BINARY = "websocket_binary"
CLOSE = "websocket_close"
ERROR = "websocket_error"

_INSTALL_HINT = "WebSocketSource needs websockets: pip install 'plugin_service[websocket]'"
HeadersLike = Union[Mapping[str, str], Iterable[Tuple[str, str]], None]


def _library() -> Any:
    """``websockets``' synchronous client and its ``ConnectionClosed``."""
    try:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect
    except ImportError as exc:
        raise ImportError("%s (%s)" % (_INSTALL_HINT, exc)) from None
    return connect, ConnectionClosed


class _Notice:
    """A close or an error the source hands the service before it reconnects."""

    __slots__ = ("kind", "payload")

    def __init__(self, kind: str, payload: Dict[str, Any]) -> None:
        self.kind = kind
        self.payload = payload


class _LibraryLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger the library is given: its records go, redacted, to the logger it
    would have used itself (``websockets.client``), so a user who turns on its
    DEBUG lines sees no frame's content, no header the user supplied, no URL
    credential or query value and no unredacted exception text. Configures no
    logging of its own."""

    def __init__(self, secrets: Dict[str, str]) -> None:
        super().__init__(logging.getLogger("websockets.client"), {})
        self._secrets = secrets  # raw text -> what is shown instead

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        text = self._redact(msg, args)
        exc_info = kwargs.pop("exc_info", None)
        if exc_info:
            exc = exc_info if isinstance(exc_info, BaseException) else _current_exception()
            if exc is not None:
                text += "\n" + failure_log(exc)
        kwargs.pop("stack_info", None)
        self.logger.log(level, "%s", text, **kwargs)

    def _redact(self, msg: Any, args: Tuple[Any, ...]) -> str:
        secrets = self._secrets
        try:
            shown = tuple(secrets.get(arg, arg) if type(arg) is str else _frame_summary(arg)
                          for arg in args)
            text = str(msg) % shown if args else str(msg)
        except Exception:
            text = "%s %s" % (msg, type_name(args))
        return sanitize(_replaced(text, secrets), 2048)


def _current_exception() -> Optional[BaseException]:
    return sys.exc_info()[1]


def _frame_summary(arg: Any) -> Any:
    """A frame as its opcode and length, never its data; anything else as is."""
    if type(arg).__name__ == "Frame" and hasattr(arg, "opcode"):
        try:
            return "%s [%d bytes]" % (arg.opcode.name, len(arg.data))
        except Exception:
            return "a frame"
    return arg


def _replaced(text: str, secrets: Dict[str, str]) -> str:
    """``text`` with every secret of at least 4 characters replaced by its shown
    form (shorter ones would match ordinary words: a log record's header value
    is redacted whole, by argument)."""
    for raw, shown in secrets.items():
        if len(raw) >= 4 and raw in text:
            text = text.replace(raw, shown)
    return text


def _secrets_of(url: str, headers: List[Tuple[str, str]]) -> Dict[str, str]:
    """What the URL and the headers hold that must never be shown, and its
    stand-in: the URL itself, its resource (``/path?query``, as the handshake's
    log record shows it), its userinfo, and every header value."""
    secrets = {value: REDACTED for _, value in headers if value}
    parts = urlsplit(url)
    shown = urlsplit(shown_url(url))
    resource = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    secrets[resource] = (shown.path or "/") + ("?" + shown.query if shown.query else "")
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        secrets[userinfo] = REDACTED
    secrets[url] = shown_url(url)
    return secrets


def _header_pairs(headers: HeadersLike) -> List[Tuple[str, str]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name), str(value)) for name, value in items]


def _check_url(url: Any) -> str:
    if not isinstance(url, str) or not url.lower().startswith(("ws://", "wss://")):
        raise ValueError("url must be a ws:// or wss:// URL string, got %s"
                         % (shown_url(url) if isinstance(url, str) else type_name(url)))
    return url


class WebSocketSource(IngressSource):
    """A WebSocket connection to ``url`` whose messages become events.

    A text message becomes an event of kind ``websocket_text`` (payload: the
    ``str``), a binary one ``websocket_binary`` (payload: the ``bytes``), each
    addressed to the source's ingress with the source's name as its ``source``,
    in the order they arrived. When the connection ends, and the service's
    ingress declares the kind (``event_kinds`` names it, or is empty), one more
    event tells the service why:

    * ``websocket_close``, payload ``{"code": int, "reason": str}``: the peer
      sent a close frame (``code`` 1005 when it named none);
    * ``websocket_error``, payload ``{"error": str, "message": str}``: the
      connection broke without one (the peer vanished, a keepalive ping went
      unanswered for ``ping_timeout``, a protocol error); ``error`` is the
      library's exception type, ``message`` its redacted text.

    Either way the host then reconnects after its ``ReconnectPolicy``'s backoff.
    A connection that cannot be opened (refused, rejected handshake, no handshake
    within ``open_timeout``) is no event: it is the source's ``last_error``, and
    a reconnect follows.

    ``headers`` (a mapping or ``(name, value)`` pairs) are sent with the opening
    handshake, ``subprotocols`` offered in order. Keepalive: a ping every
    ``ping_interval`` seconds, and a pong missing after ``ping_timeout`` fails
    the connection (either None: off). ``send(data)`` (through
    ``SourceHandle.send``, from any thread) sends a ``str`` as a text message
    and ``bytes`` as a binary one; it blocks while the peer's TCP window is full.

    Secrets: the URL is shown (``repr``, ``url``, errors, the library's log
    records) with its userinfo and query values as ``***``, header values never,
    frames' content never.

    Needs the ``websocket`` extra (the ``websockets`` library); constructing
    one without it raises ``ImportError`` saying what to install. ``ValueError``
    for a URL that is not ``ws://`` or ``wss://``, or a negative bound.
    """

    #: Messages the library buffers before it stops reading the socket (it
    #: resumes at a quarter of it); a subclass may change it.
    max_queue: int = 16
    #: Seconds ``close()`` waits for the peer's answer to its close frame.
    close_timeout: float = 2.0

    def __init__(self, url: str, *, headers: HeadersLike = None,
                 subprotocols: Sequence[str] = (), ping_interval: Optional[float] = 20.0,
                 ping_timeout: Optional[float] = 10.0,
                 open_timeout: Optional[float] = 10.0) -> None:
        self._connect, self._closed_error = _library()
        self._url = _check_url(url)
        #: The URL as it may be shown: userinfo and query values as ``***``.
        self.url = shown_url(url)
        self._headers = _header_pairs(headers)
        self._subprotocols = tuple(str(name) for name in subprotocols)
        self._ping_interval = non_negative("ping_interval", ping_interval, number=True)
        self._ping_timeout = non_negative("ping_timeout", ping_timeout, number=True)
        self._open_timeout = non_negative("open_timeout", open_timeout, number=True)
        self._secrets = _secrets_of(url, self._headers)
        self._log = _LibraryLog(self._secrets)
        self._opened: Any = None  # what connect() returned, a context manager
        self._conn: Any = None  # the connection it entered
        # Set when the connection has ended: what the next receive() raises.
        self._ended: Optional[ConnectionError] = None

    def __repr__(self) -> str:
        return "WebSocketSource(%r)" % (self.url,)

    # ------------------------------------------------------------ the host's loop
    def connect(self) -> None:
        """Open the connection and complete the opening handshake within
        ``open_timeout``; ``ConnectionError`` (redacted) if that fails."""
        self._ended = None
        try:
            opening = self._connect(
                self._url, additional_headers=self._headers or None,
                subprotocols=list(self._subprotocols) or None,
                ping_interval=self._ping_interval, ping_timeout=self._ping_timeout,
                open_timeout=self._open_timeout, close_timeout=self.close_timeout,
                max_queue=self.max_queue, logger=self._log)
            # Entered as the library asks (websockets 17 warns otherwise); its
            # exit, in close(), closes the connection.
            self._conn = opening.__enter__()
            self._opened = opening
        except Exception as exc:
            raise ConnectionError("cannot open %s: %s" % (self.url, self._text(exc))) from None

    def receive(self, ctx: SourceContext) -> Any:
        """The next message (``str`` or ``bytes``), None if none arrived within
        ``ctx.remaining()``; once the connection has ended, its close or error
        notice (when the service takes that kind), then ``ConnectionError``."""
        conn = self._conn
        if conn is None or self._ended is not None:
            raise self._ended or ConnectionError("%s is not connected" % self.url)
        try:
            return conn.recv(ctx.remaining())
        except TimeoutError:
            return None
        except self._closed_error as exc:
            return self._end(exc)

    def close(self) -> None:
        """Close the connection: a close frame, and up to ``close_timeout``
        seconds for the peer's."""
        opened, self._opened, self._conn = self._opened, None, None
        if opened is not None:
            opened.__exit__(None, None, None)

    def to_event(self, item: Any) -> IngressEvent:
        """The event of one message or notice (see the class's docstring)."""
        kind = type(item)
        if kind is str:
            return IngressEvent(self.ingress, self.name, item,  # type: ignore[arg-type]
                                kind=TEXT)
        if kind is bytes:
            return IngressEvent(self.ingress, self.name, item,  # type: ignore[arg-type]
                                kind=BINARY)
        if kind is _Notice:
            return IngressEvent(self.ingress, self.name, item.payload,  # type: ignore[arg-type]
                                kind=item.kind)
        return super().to_event(item)

    def send(self, data: Any) -> None:
        """Send ``data``: a ``str`` as a text message, ``bytes`` (or a
        ``bytearray``, a ``memoryview``) as a binary one. ``TypeError`` for
        anything else; ``SourceUnavailable`` (``state`` backoff) when the
        connection has ended, before the host has noticed. Thread-safe."""
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            raise TypeError("WebSocketSource.send takes str (a text message) or bytes "
                            "(a binary message), not %s" % type_name(data))
        conn = self._conn
        if conn is None or self._ended is not None:
            raise self._unavailable("it is not connected")
        try:
            conn.send(data)
        except self._closed_error as exc:
            raise self._unavailable("its connection closed (%s)" % self._text(exc)) from None

    # --------------------------------------------------------------- the end
    def _end(self, exc: Any) -> Any:
        """Record why the connection ended; its notice if the service takes it."""
        close = getattr(exc, "rcvd", None)
        if close is not None:  # the reason is the peer's words, like a frame: not shown
            why = "the peer closed it with code %d" % close.code
            notice = _Notice(CLOSE, {"code": int(close.code), "reason": str(close.reason)})
        else:
            why = self._text(exc)
            notice = _Notice(ERROR, {"error": type_name(exc), "message": self._message(exc)})
        self._ended = ConnectionError("connection to %s ended: %s" % (self.url, why))
        if self.accepts(notice.kind):
            return notice
        raise self._ended from None

    def _unavailable(self, why: str) -> errors.SourceUnavailable:
        # The connection ended under the host's feet: the reader learns of it on
        # its next receive() and backs off before connecting again.
        return errors.SourceUnavailable(
            "source %r cannot send: %s; it reconnects after its backoff: send again "
            "once its status says open" % (self.name, why), source=self.name,
            state=SourceState.BACKOFF, service=self.service)

    def _message(self, exc: BaseException) -> str:
        """``exc``'s message (and its cause's), the URL and header values redacted."""
        try:
            text = str(exc)
            cause = exc.__cause__
            if cause is not None:
                text += " (%s: %s)" % (type_name(cause), cause)
        except Exception:
            text = "<unprintable %s>" % type_name(exc)
        return sanitize(_replaced(text, self._secrets), 400)

    def _text(self, exc: BaseException) -> str:
        """``"Type: message"`` of ``exc``, redacted (see ``_message``)."""
        text = self._message(exc)
        return "%s: %s" % (type_name(exc), text) if text else type_name(exc)
