"""Doubles and fixtures for the tool, isolation, host and discovery tests (issue 4).

Every double that blocks waits on a ``Gate``; the ``make_gate`` fixture opens all
of its gates before ``make_host`` closes the hosts (it depends on ``make_host``,
so it is torn down first), and a gate never blocks longer than ``HANG`` anyway.
Test modules import the fixtures they use by name.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, List

import pytest

from plugin_service import Ingress, IngressEvent, PluginHost, ServicePlugin, ToolPlugin

#: A generous bound that only catches a hang; nothing is expected to take this long.
HANG = 5.0
#: A timeout a gated call always outlives (it blocks on its gate, not on a sleep).
SHORT = 0.05
#: A timeout a call surely starts within, even on a loaded machine, for the tests
#: that need a call to time out while it runs rather than while it waits.
STARTS_WITHIN = 0.5
#: The ingress every service double declares.
INGRESS = "in"


def event(payload: Any = None) -> IngressEvent:
    """An event for the service doubles' ingress."""
    return IngressEvent(INGRESS, "test", payload)


class Gate:
    """A tool ``(request, ctx)`` that records its call, then blocks until released.

    ``entered`` and ``returned`` count calls; ``threads`` and ``contexts`` record
    where each call ran and what it was given. The call returns its request.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._released = threading.Event()
        self.entered = 0
        self.returned = 0
        self.threads: List[threading.Thread] = []
        self.contexts: List[Any] = []

    def __call__(self, request: Any, ctx: Any) -> Any:
        with self._changed:
            self.entered += 1
            self.threads.append(threading.current_thread())
            self.contexts.append(ctx)
            self._changed.notify_all()
        self._released.wait(HANG)
        with self._changed:
            self.returned += 1
            self._changed.notify_all()
        return request

    @property
    def is_released(self) -> bool:
        return self._released.is_set()

    def release(self) -> None:
        self._released.set()

    def wait_entered(self, count: int = 1) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.entered >= count, HANG)

    def wait_returned(self, count: int = 1) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.returned >= count, HANG)


class Recorder:
    """A tool that records the requests it ran and the thread, and echoes them."""

    def __init__(self) -> None:
        self.requests: List[Any] = []
        self.threads: List[threading.Thread] = []

    def __call__(self, request: Any, ctx: Any) -> Any:
        self.requests.append(request)
        self.threads.append(threading.current_thread())
        return request


class Upper(ToolPlugin):
    """A ToolPlugin subclass that does not call ``super().__init__()``."""

    def __init__(self, suffix: str = "") -> None:
        self.suffix = suffix

    def invoke(self, request: Any, ctx: Any) -> Any:
        return str(request).upper() + self.suffix


class Boom(Exception):
    """What ``raising_tool`` raises."""


def raising_tool(message: str) -> Callable[[Any, Any], Any]:
    """A tool that raises ``Boom(message)``; the raised instances are kept on it."""
    raised: List[BaseException] = []

    def tool(request: Any, ctx: Any) -> Any:
        error = Boom(message)
        raised.append(error)
        raise error

    tool.raised = raised  # type: ignore[attr-defined]
    return tool


class EchoService(ServicePlugin):
    """A service that returns ``("echo", payload)``."""

    ingresses = [Ingress(INGRESS)]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        return ("echo", event.payload)


class GatedService(ServicePlugin):
    """A service whose handler is a ``Gate``: it blocks until the gate is released."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        return self.gate(event.payload, ctx)


class FailingService(ServicePlugin):
    """A service whose handler always raises ``Boom``."""

    ingresses = [Ingress(INGRESS)]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        raise Boom("handler failed")


@pytest.fixture
def make_host():
    """``make_host(**kwargs)``: a PluginHost closed (with a bound) at teardown."""
    hosts: List[PluginHost] = []

    def make(**kwargs: Any) -> PluginHost:
        host = PluginHost(**kwargs)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.close(timeout=HANG)


@pytest.fixture
def make_gate(make_host):
    """``make_gate()``: a Gate released at teardown, before any host is closed."""
    gates: List[Gate] = []

    def make() -> Gate:
        gate = Gate()
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        gate.release()


# ------------------------------------------- exceptions that fight being described
#: How long a blocking double below waits at most: longer than any bound a test
#: checks (``HANG``), so a test that should see no waiting fails instead of passing
#: late; still bounded, so a failing run ends.
LONG = 4 * HANG


class RaisingStrError(Exception):
    """An exception whose ``__str__`` raises ``error`` (any BaseException)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def __str__(self) -> str:
        raise self.error


class NonStrError(Exception):
    """An exception whose ``__str__`` returns an int."""

    def __str__(self) -> Any:
        return 42


class _LyingStr(str):
    """A str whose own conversions raise."""

    def __str__(self) -> str:
        raise RuntimeError("lying str")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("lying str")


class _LyingMeta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise RuntimeError("no name for you")


class LyingError(Exception, metaclass=_LyingMeta):
    """An exception whose class name raises, whose every plain attribute raises,
    and whose ``__str__`` returns a str that raises when converted again."""

    def __str__(self) -> str:
        return _LyingStr("lies")

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__"):
            return super().__getattribute__(name)
        raise RuntimeError("no %s for you" % name)


class SlowStrError(Exception):
    """An exception whose ``__str__`` blocks until ``release`` is set (or ``LONG``)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def __str__(self) -> str:
        self.entered.set()
        self.release.wait(LONG)
        return "finally described"


def raising(error: BaseException) -> Callable[[Any, Any], Any]:
    """A tool that raises ``error``."""

    def tool(request: Any, ctx: Any) -> Any:
        raise error

    return tool


class Stuck:
    """A tool that ignores ``ctx`` (a socket read without timeout) and blocks until
    ``release()`` (or ``LONG``); ``entered`` is set once it runs."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._released = threading.Event()
        self.contexts: List[Any] = []
        self.threads: List[threading.Thread] = []

    def __call__(self, request: Any, ctx: Any) -> Any:
        self.contexts.append(ctx)
        self.threads.append(threading.current_thread())
        self.entered.set()
        self._released.wait(LONG)
        return request

    def release(self) -> None:
        self._released.set()


@pytest.fixture
def make_stuck(make_host):
    """``make_stuck()``: a Stuck tool released at teardown, before hosts close."""
    made: List[Stuck] = []

    def make() -> Stuck:
        stuck = Stuck()
        made.append(stuck)
        return stuck

    yield make
    for stuck in made:
        stuck.release()
