"""The demo host: ``plugin-service demo`` and ``python -m plugin_service``.

It hosts the example plugins (the ``words`` service and the ``frequency`` tool),
feeds them events for a few seconds while one status line refreshes, and ends
with a status table of every service and tool.
"""
from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from . import errors
from ._config import ServiceConfig
from ._diagnostics import Diagnostic, HostStatus
from ._events import IngressEvent
from ._examples import WordCounter, WordFrequency
from ._host import PluginHost

__all__ = ["EXAMPLES_GROUP", "run_demo", "status_line", "status_table"]

EXAMPLES_GROUP = "plugin_service.examples"

#: What the demo feeds, in a loop: a line that fails in the handler and a payload
#: that the ingress refuses show the failed and rejected counters moving.
DEMO_PAYLOADS: Sequence[Any] = (
    "the quick brown fox", "jumps over the lazy dog", "please fail here",
    "the fox again", 42, "a dog and a fox",
)

_TICK = 0.05  # seconds between two bursts of events
_BURST = 6  # events per burst; more than the queue drains at once, so depth shows
_PLAIN_EVERY = 1.0  # seconds between two status lines when stdout is not a terminal


def _load_examples(host: PluginHost, config: ServiceConfig) -> None:
    """The example plugins through their entry points, or directly from a source tree."""
    report = host.load_entry_points(EXAMPLES_GROUP, config=config)
    if "words" not in report.loaded:
        host.add_service("words", WordCounter, config)
    if "frequency" not in report.loaded:
        host.add_tool("frequency", WordFrequency())


def _feed(host: PluginHost, payloads: itertools.cycle[Any]) -> None:
    """One burst: events for ``words`` (refusals are counted, not raised) and a tool call."""
    words = host.service("words")
    text = []
    for _ in range(_BURST):
        payload = next(payloads)
        try:
            words.submit(IngressEvent("text", "demo", payload, kind="line"))
        except errors.PluginServiceError:
            pass  # InvalidEvent or QueueFull: the service's counters show it
        if isinstance(payload, str):
            text.append(payload)
    try:
        host.submit_tool("frequency", " ".join(text), timeout=1.0)
    except errors.PluginServiceError:
        pass  # ToolBusy or HostClosed: the tool's counters show it


def status_line(status: HostStatus, elapsed: float) -> str:
    """One line summing up every service and tool, for the live display."""
    parts = []
    for service in status.services.values():
        c = service.counters
        parts.append(f"{service.name} {service.state.value} queue {service.queue_depth}/"
                     f"{service.queue_capacity} ok {c.succeeded} failed {c.failed} "
                     f"rejected {c.rejected}")
    for tool in status.tools.values():
        t = tool.counters
        parts.append(f"{tool.name} calls {t.calls} ok {t.succeeded} failed {t.failed}")
    return "[{:5.1f}s] {}".format(elapsed, " | ".join(parts))


def _last_error(diagnostic: Diagnostic | None, width: int = 100) -> str:
    if diagnostic is None:
        return "-"
    text = f"{diagnostic.kind.value}: {diagnostic.message}"
    return text if len(text) <= width else text[:width - 3] + "..."


def _table(header: Sequence[str], rows: list[tuple[list[str], str]]) -> list[str]:
    """Aligned columns; each row is followed by an indented ``last error:`` line, so a
    long message does not widen the table."""
    cells = [list(header), *(row for row, _ in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

    lines = [line(list(header))]
    for row, last_error in rows:
        lines += [line(row), "    last error: " + last_error]
    return lines


def status_table(status: HostStatus) -> str:
    """The status of every service and tool as two text tables (no trailing newline)."""
    services = []
    for s in status.services.values():
        c = s.counters
        services.append(([
            s.name, s.state.value, f"{s.queue_depth}/{s.queue_capacity}",
            str(s.in_flight), str(c.enqueued), str(c.dispatched), str(c.succeeded),
            str(c.failed), str(c.timed_out), str(c.rejected), str(c.dropped),
            str(c.retried), str(s.restarts)], _last_error(s.last_error)))
    tools = []
    for t in status.tools.values():
        k = t.counters
        tools.append(([
            t.name, str(t.in_flight), str(k.calls), str(k.succeeded), str(k.failed),
            str(k.timed_out), str(k.rejected)], _last_error(t.last_error)))
    lines = _table(("SERVICE", "STATE", "QUEUE", "IN-FLIGHT", "ENQUEUED", "DISPATCHED",
                    "SUCCEEDED", "FAILED", "TIMED-OUT", "REJECTED", "DROPPED", "RETRIED",
                    "RESTARTS"), services)
    lines.append("")
    lines += _table(("TOOL", "IN-FLIGHT", "CALLS", "SUCCEEDED", "FAILED", "TIMED-OUT",
                     "REJECTED"), tools)
    return "\n".join(lines)


class _LiveLine:
    """The refreshing status line: rewritten in place with ``\\r`` on a terminal,
    a plain line every ``_PLAIN_EVERY`` seconds otherwise."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = out.isatty()
        self._width = 0
        self._next_plain = 0.0

    def show(self, text: str, elapsed: float, last: bool = False) -> None:
        if self._tty:
            self._out.write("\r" + text.ljust(self._width))
            self._width = len(text)
            if last:
                self._out.write("\n")
        elif last or elapsed >= self._next_plain:
            self._out.write(text + "\n")
            self._next_plain = elapsed + _PLAIN_EVERY
        self._out.flush()


def run_demo(out: TextIO | None = None, seconds: float = 3.0) -> int:
    """Run the demo host for ``seconds`` seconds, writing to ``out`` (stdout by
    default): the plugins loaded, a live status line, then the final status table
    once the host has closed (every queued event drained). Returns 0."""
    out = sys.stdout if out is None else out
    live = _LiveLine(out)
    payloads = itertools.cycle(DEMO_PAYLOADS)
    with PluginHost() as host:
        # fail_after=None: a failing line fails alone instead of failing the service.
        _load_examples(host, ServiceConfig(queue_size=16, fail_after=None))
        out.write("services: {}; tools: {}; feeding events for {:g}s\n".format(
            ", ".join(sorted(host.status().services)),
            ", ".join(sorted(host.status().tools)), seconds))
        host.start_all(timeout=5)
        began = time.monotonic()
        deadline = began + seconds
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            _feed(host, payloads)
            live.show(status_line(host.status(), now - began), now - began)
            time.sleep(min(_TICK, max(0.0, deadline - time.monotonic())))
        live.show(status_line(host.status(), time.monotonic() - began),
                  time.monotonic() - began, last=True)
    out.write(f"\nfinal status:\n{status_table(host.status())}\n")
    out.flush()
    return 0
