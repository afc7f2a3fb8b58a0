"""The plugin double of the handler-stack tests (``status().handler_stack``), on
either backend: its handler reads a secret into a local, then waits at a gate
from the payload inside a function of its own, whose name the stack must show.
Picklable, so a Ray actor runs it too (its module is found through PYTHONPATH).
"""
from __future__ import annotations

import sys
from typing import Any

from plugin_service import DispatchContext, Ingress, IngressEvent, ServicePlugin

#: In a local variable of the handler and in the payload: never in a stack.
SECRET = "hunter2-stack-secret"


def gated(gate: Any, depth: int = 0) -> IngressEvent:
    """An event whose handler recurses ``depth`` times, then waits at ``gate``."""
    return IngressEvent("in", "test", {"gate": gate, "depth": depth, "password": SECRET})


class AtTheGate(ServicePlugin):
    """Waits at its event's gate (ignoring cancellation), then answers "passed";
    an event without a gate is answered at once."""

    ingresses = [Ingress("in")]

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> Any:
        payload = event.payload
        if not isinstance(payload, dict):
            return "quick"
        password = payload["password"]  # a secret in a local: never shown
        return self.descend(payload["gate"], payload["depth"], password)

    def descend(self, gate: Any, depth: int, password: str) -> Any:
        if depth > 0:
            return self.descend(gate, depth - 1, password)
        return self.wait_at_the_gate(gate)

    def wait_at_the_gate(self, gate: Any) -> Any:
        gate.pass_()
        return "passed"


def shown(qualname: str) -> str:
    """How a stack frame's text names the function ``qualname`` (``" in NAME"``):
    qualified (``Class.method``) on Python 3.11+, which has ``co_qualname``; by
    its own name before."""
    name = qualname if sys.version_info >= (3, 11) else qualname.rpartition(".")[2]
    return " in " + name
