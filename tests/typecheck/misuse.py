"""Calls a type checker must refuse: ``tests/test_typing.py`` runs ``mypy --strict``
on this file and expects exactly the errors named by the ``# E: <code>`` comments,
on those lines and nowhere else. (At run time each of these raises: see the runtime
checks tested in test_kinds.py and test_bad_input.py.)
"""
from __future__ import annotations

from plugin_service import (
    DispatchContext,
    DispatchFuture,
    Ingress,
    IngressEvent,
    PluginHost,
    ServicePlugin,
)


class Greeter(ServicePlugin):
    ingresses = [Ingress("greetings")]

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> str:
        return "hello"


def misuse(host: PluginHost) -> None:
    host.add_service("x", 42)  # E: arg-type
    svc = host.add_service("greeter", Greeter)
    svc.submit("not an event")  # E: arg-type
    host.submit("greeter", "not an event")  # E: arg-type
    host.add_tool("t", 42)  # E: arg-type
    svc.post("not an event")  # E: arg-type
    host.post("greeter", "not an event")  # E: arg-type
    svc.submit_many(["not an event"])  # E: list-item
    count: int = svc.submit(IngressEvent("greetings", "cli")).result()  # E: assignment
    future: DispatchFuture[int] = svc.submit(IngressEvent("greetings", "cli"))  # E: assignment
    del count, future
