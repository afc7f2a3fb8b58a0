"""The sources a command line attaches: ``--timer SERVICE:INGRESS=SECONDS`` and
``--websocket SERVICE:INGRESS=URL``.

Each kind of source is one entry of ``SOURCE_OPTIONS``: its option, the
metavar of its value, its help, and what builds the source from the value's
text. Every option takes ``SERVICE:INGRESS=VALUE`` and may be repeated; the
sources are named ``<option>-<n>`` (``timer-1``...) in the order given.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NamedTuple

from .. import errors
from .._host import PluginHost
from .._redact import shown_url
from .._sources import IngressSource, TimerSource, WebSocketSource
from .parser import _seconds, _UsageError


class SourceOption(NamedTuple):
    """One ``--OPTION SERVICE:INGRESS=VALUE`` of ``run``."""

    option: str  # without the dashes; also the prefix of the sources' names
    metavar: str  # of VALUE
    help: str
    build: Callable[[str], IngressSource]  # VALUE's text -> the source; ValueError if bad


def _timer(text: str) -> IngressSource:
    try:
        every = _seconds(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(str(exc)) from None
    return TimerSource(every)


def _websocket(text: str) -> IngressSource:
    try:
        return WebSocketSource(text)
    except ImportError as exc:  # the websocket extra is not installed
        raise ValueError(str(exc).partition(" (")[0]) from None


SOURCE_OPTIONS: list[SourceOption] = [
    SourceOption("timer", "SECONDS",
                 "send a 'tick' event (payload null) to INGRESS of SERVICE every SECONDS "
                 "(repeatable)", _timer),
    SourceOption("websocket", "URL",
                 "connect to the WebSocket server at URL (ws:// or wss://) and send each "
                 "message it sends to INGRESS of SERVICE, as a 'websocket_text' or "
                 "'websocket_binary' event; reconnects when the connection ends "
                 "(repeatable; needs the 'websocket' extra)", _websocket),
]


class Attachment(NamedTuple):
    service: str
    ingress: str
    value: str


def parse_attachment(text: str, option: str, metavar: str) -> Attachment:
    """``SERVICE:INGRESS=VALUE`` (VALUE may hold ``=`` and ``:``; a service name
    from the command line never holds ``:``); ``_UsageError`` if it is not."""
    head, sep, value = text.partition("=")
    service, colon, ingress = head.partition(":")
    if not sep or not colon or not service.strip() or not ingress.strip() or not value:
        # The value may be a URL with credentials in it: shown redacted.
        shown = head + sep + (shown_url(value) if "://" in value else value)
        raise _UsageError(f"--{option} {shown!r} is not SERVICE:INGRESS={metavar}")
    return Attachment(service.strip(), ingress.strip(), value)


def add_source_options(run: argparse.ArgumentParser) -> None:
    """The options of ``SOURCE_OPTIONS`` on the ``run`` parser."""
    for spec in SOURCE_OPTIONS:
        run.add_argument(f"--{spec.option}", action="append", default=[],
                         metavar=f"SERVICE:INGRESS={spec.metavar}", help=spec.help)


def attach_sources(host: PluginHost, args: argparse.Namespace) -> None:
    """Attach the sources the command line names; ``_UsageError`` for one that
    cannot be (bad value, unknown service, undeclared ingress)."""
    for spec in SOURCE_OPTIONS:
        for index, text in enumerate(getattr(args, spec.option, None) or (), start=1):
            where = parse_attachment(text, spec.option, spec.metavar)
            try:
                source: Any = spec.build(where.value)
                host.add_source(f"{spec.option}-{index}", source, service=where.service,
                                ingress=where.ingress)
            except (ValueError, TypeError, errors.ServiceNotFound) as exc:
                raise _UsageError(f"--{spec.option} {where.service}:{where.ingress}: "
                                  f"{exc}") from None
