"""Example plugins shipped with the package, used by the demo and the docs.

They are declared as entry points of the ``plugin_service.examples`` group (not
``plugin_service.plugins``, so no application loads them by accident).
"""
from __future__ import annotations

import collections
from typing import Any, Dict

from ._context import DispatchContext, ToolContext
from ._events import Ingress, IngressEvent
from ._plugin import ServicePlugin, ToolPlugin


class WordCounter(ServicePlugin):
    """Example service: counts the words of ``line`` events, one at a time."""

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

    def status(self) -> Dict[str, Any]:
        return {"words": getattr(self, "words", 0)}


class WordFrequency(ToolPlugin):
    """Example tool: the most common words of a text, as ``[[word, count], ...]``."""

    def invoke(self, request: Any, ctx: ToolContext) -> Any:
        counts = collections.Counter(str(request).lower().split())
        return [list(item) for item in counts.most_common(3)]
