"""A small program written as a user writes it against plugin_service's public API.

``tests/test_typing.py`` type-checks it with ``mypy --strict`` (it must pass with no
error) and runs it. It imports only public names from ``plugin_service``, so it
can also be checked against an installed copy of the package, from any directory:
``python -m mypy --strict tests/typecheck/user_program.py``.

``assert_type`` pins what a type checker infers; at run time it does nothing.
"""
from __future__ import annotations

from concurrent.futures import Future, as_completed
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from plugin_service import (
    DispatchContext,
    DispatchFuture,
    Ingress,
    IngressEvent,
    LifecycleState,
    PluginHost,
    ServiceConfig,
    ServiceHandle,
    ServicePlugin,
    ToolContext,
    ToolPlugin,
    errors,
)

if TYPE_CHECKING:
    from typing_extensions import assert_type  # type checkers ship its stubs
else:
    def assert_type(value, _expected):
        return value


class Greeter(ServicePlugin):
    """A service plugin: its handler's return type is what its futures resolve to."""

    ingresses = [Ingress("greetings", event_kinds=("hello",))]

    def start(self) -> None:
        self.seen = 0

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> str:
        self.seen += 1
        return "hello, %s" % (event.payload,)

    def status(self) -> Optional[Mapping[str, Any]]:
        return {"seen": self.seen}


class Tally:
    """A plugin without the base class: any object with these methods will do."""

    ingresses = [Ingress("numbers")]

    def __init__(self) -> None:
        self.total = 0

    def start(self) -> None:
        self.total = 0

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> int:
        if ctx.cancelled:
            return self.total
        self.total += int(event.payload)
        return self.total

    def stop(self) -> None:
        pass


class Upper(ToolPlugin):
    """A tool plugin: ``invoke`` runs on the host's tool pool."""

    def invoke(self, request: Any, ctx: ToolContext) -> str:
        return str(request).upper()


def echo(request: object, ctx: ToolContext) -> object:
    """Any ``(request, ctx)`` callable is a tool too."""
    return request


def greeting_of(future: DispatchFuture[str]) -> str:
    """A user's own function over typed futures."""
    return future.result(timeout=5)


def run() -> Dict[str, Any]:
    with PluginHost(tool_workers=2) as host:
        greeter = host.add_service("greeter", Greeter, ServiceConfig(queue_size=8))
        assert_type(greeter, ServiceHandle[str])
        tally = host.add_service("tally", Tally())  # an instance, run as is
        assert_type(tally, ServiceHandle[int])
        fresh = host.add_service("fresh", lambda: Tally(),  # a factory: one per start
                                 ServiceConfig(dispatch_timeout=2.0))
        assert_type(fresh, ServiceHandle[int])
        host.add_tool("upper", Upper())
        host.add_tool("echo", echo, timeout=2.0, max_concurrency=1)
        host.add_tool("length", lambda request, ctx: len(request))
        host.start_all(timeout=5)
        assert greeter.state is LifecycleState.RUNNING

        future = greeter.submit(IngressEvent("greetings", "cli", "world", kind="hello"))
        assert_type(future, DispatchFuture[str])
        assert_type(future.result(timeout=5), str)
        seen: List[str] = []
        future.add_done_callback(lambda done: seen.append(done.event.correlation_id))
        assert seen == [future.event.correlation_id]
        assert greeting_of(future) == "hello, world"

        sums = [tally.submit(IngressEvent("numbers", "cli", n), block=True, timeout=5)
                for n in (1, 2, 3)]
        totals: List[int] = [f.result(timeout=5) for f in as_completed(sums)]
        assert sorted(totals) == [1, 3, 6]

        batch = tally.submit_many([IngressEvent("numbers", "cli", n) for n in (4, 5)])
        assert_type(batch, List[DispatchFuture[int]])
        assert [f.result(timeout=5) for f in batch] == [10, 15]
        posted: str = tally.post(IngressEvent("numbers", "cli", 0))  # fire and forget
        assert posted

        by_name = host.submit("greeter", IngressEvent("greetings", "cli", "you", kind="hello"))
        assert_type(by_name, DispatchFuture[Any])  # looked up by name: untyped
        assert by_name.result(timeout=5) == "hello, you"

        try:
            greeter.submit(IngressEvent("greetings", "cli", "x", kind="bye"))
        except errors.InvalidEvent as refused:
            reason: str = refused.reason
            assert "bye" in reason
        try:
            fresh.submit(IngressEvent("numbers", "cli", 4)).result(timeout=5)
        except TimeoutError:  # the wait ran out, or the handler's DispatchTimeout
            raise AssertionError("a quick handler timed out") from None

        shout = host.call_tool("upper", "abc")  # tools are looked up by name: Any
        assert_type(shout, Any)
        text: str = shout
        echoed: Future[Any] = host.submit_tool("echo", 42, timeout=1.0)
        try:
            assert echoed.result(timeout=5) == 42
        except errors.ToolTimeout as late:
            timeout: Optional[float] = late.timeout
            raise AssertionError("echo timed out after %s s" % timeout) from None
        assert host.call_tool("length", "four") == 4

        status = host.status()
        services: Dict[str, Any] = status.to_dict()["services"]
        assert services["greeter"]["plugin_status"] == {"seen": 2}
        return {"greeting": future.result(), "text": text, "totals": totals}


if __name__ == "__main__":
    print(run())
