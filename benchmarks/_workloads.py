"""What the scenarios measure with: plugin and tool doubles, host set-up, the design
floor's consumer loops and the pykka actors the baselines talk to.

A consumer loop here runs a whole thread's work in one call, so using it adds no
call per event; the timed producer loops stay inline in each variant.
"""
from __future__ import annotations

import queue
from typing import Any, Iterable, List, MutableSequence, Optional

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin

pykka: Any
try:
    import pykka
except ImportError:  # pykka comes with the ``bench`` extra; without it its rows are skipped
    pykka = None

__all__ = [
    "INGRESS",
    "PYKKA_MISSING",
    "COUNT",
    "CountingActor",
    "SinkActor",
    "NoOpService",
    "noop",
    "noop_tool",
    "pykka",
    "serve_floor",
    "serve_futures",
    "start_services",
]

INGRESS = "bench"
PYKKA_MISSING = "pykka is not importable: its rows are skipped (pip install pykka)"


def noop(*args: Any) -> None:
    """What a baseline's consumer or executor calls in place of a handler."""
    return None


def noop_tool(request: Any, ctx: Any) -> None:
    """A tool that does nothing and returns None."""
    return None


class NoOpService(ServicePlugin):
    """A service whose handler does nothing and returns None."""

    ingresses = [Ingress(INGRESS)]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> None:
        return None


def start_services(host: PluginHost, names: Iterable[str], plugin: Any,
                   config: ServiceConfig) -> List[Any]:
    """Add one service per name to ``host``, each of ``plugin`` with ``config``, then
    start them all; their handles, in order."""
    handles = [host.add_service(name, plugin, config) for name in names]
    host.start_all()
    return handles


# ------------------------------------------------ the design floor's consumers
def serve_floor(inbox: queue.Queue, handled: MutableSequence[int], slot: int) -> None:
    """Consume ``(future, message)`` pairs until None: call a no-op, count into
    ``handled[slot]``, then resolve the future (so a last result implies the count)."""
    get = inbox.get
    count = 0
    while True:
        item = get()
        if item is None:
            return
        future, message = item
        noop(message)
        count += 1
        handled[slot] = count
        future.set_result(None)


def serve_futures(inbox: queue.Queue) -> None:
    """Consume ``(future, message)`` pairs until None: call a no-op, resolve the future."""
    get = inbox.get
    while True:
        item = get()
        if item is None:
            return
        future, message = item
        noop(message)
        future.set_result(None)


# ------------------------------------------------------------- pykka actors
COUNT = object()  # asks a CountingActor how many messages it handled

CountingActor: Any = None
SinkActor: Any = None
if pykka is not None:
    class CountingActor(pykka.ThreadingActor):  # type: ignore[no-redef]
        """Counts every message; answers COUNT with the count."""

        use_daemon_thread = True  # a hung run must not keep the interpreter alive

        def __init__(self) -> None:
            super().__init__()
            self.handled = 0

        def on_receive(self, message: Any) -> Optional[int]:
            if message is COUNT:
                return self.handled
            self.handled += 1
            return None

    class SinkActor(pykka.ThreadingActor):  # type: ignore[no-redef]
        """Does nothing with a message."""

        use_daemon_thread = True

        def on_receive(self, message: Any) -> None:
            return None
