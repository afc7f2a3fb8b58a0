"""A plugin that writes down every event it begins, in a file of the test's: a
side channel that survives the plugin's process, to count how often each event
ran. Importable by Ray worker processes (no pytest, no Ray at import)."""
from __future__ import annotations

import os
from typing import Any, Dict, List

from plugin_service import DispatchContext, Ingress, IngressEvent, ServicePlugin


class Journal(ServicePlugin):
    """``ok`` appends its tag to the journal and returns it; ``exit`` appends its
    tag, then ends the process (``os._exit``). The payload is ``(path, tag)``."""

    ingresses = [Ingress("ok"), Ingress("exit")]

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> Any:
        path, tag = event.payload
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (tag + "\n").encode())  # one write: whole lines only
        finally:
            os.close(fd)
        if event.ingress == "exit":
            os._exit(1)
        return tag


def runs(path: str) -> Dict[str, int]:
    """How many times each tag ran, by the journal."""
    counts: Dict[str, int] = {}
    if os.path.exists(path):
        with open(path) as journal:
            for line in journal.read().splitlines():
                counts[line] = counts.get(line, 0) + 1
    return counts


def journal_event(ingress: str, path: str, tag: str) -> IngressEvent:
    return IngressEvent(ingress, "test", (path, tag))


def round_of(path: str, number: int) -> List[IngressEvent]:
    """Quick events right before a crash, and two behind it."""
    names = [("ok", "ok0"), ("ok", "ok1"), ("ok", "ok2"), ("exit", "exit"),
             ("ok", "after0"), ("ok", "after1")]
    return [journal_event(ingress, path, "r%d-%s" % (number, name)) for ingress, name in names]
