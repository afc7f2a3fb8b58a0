"""A short demo host: the main job of ``python -m plugin_service``."""
from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from ._config import ServiceConfig
from ._context import DispatchContext
from ._events import Ingress, IngressEvent
from ._host import PluginHost
from ._plugin import ServicePlugin
from . import errors


class WordCounter(ServicePlugin):
    """Example service: counts the words of text events, one at a time."""

    ingresses = [Ingress("text", event_kinds=("line",),
                         validate=lambda payload: isinstance(payload, str))]

    def start(self) -> None:
        self.words = 0

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> int:
        if "fail" in event.payload:
            raise ValueError("refusing %r" % event.payload)
        count = len(event.payload.split())
        self.words += count
        return count

    def status(self) -> Any:
        return {"words": self.words}


def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the demo host, feed it events, print outcomes and the final status."""
    lines = ["the quick brown fox", "jumps over", "please fail here", "the lazy dog"]
    with PluginHost() as host:
        service = host.add_service("words", WordCounter,
                                   ServiceConfig(queue_size=8, fail_after=None))
        host.start_all(timeout=5)
        futures = [service.submit(IngressEvent("text", "demo", line, kind="line"))
                   for line in lines]
        try:
            service.submit(IngressEvent("text", "demo", 42, kind="line"))
        except errors.InvalidEvent as exc:
            print("rejected: %s" % exc.reason, file=out)
        for line, future in zip(lines, futures):
            try:
                print("%-22r -> %s words" % (line, future.result(timeout=5)), file=out)
            except errors.DispatchError as exc:
                print("%-22r -> %s: %s" % (line, type(exc).__name__, exc), file=out)
        status = host.status()
    print(json.dumps(status.to_dict(), indent=2), file=out)
    return 0
