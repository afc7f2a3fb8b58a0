"""Service-plugin doubles, and the event they take.

Every double that blocks waits on a gate (a ``threading.Event``, or a
:class:`support.tools.Gate`) the test opens; the ``gates`` and ``make_gate``
fixtures open every gate they made before the host closes, so no test leaves a
thread behind.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, List, Optional

from plugin_service import Ingress, IngressEvent, ServicePlugin
from support.timing import HANG
from support.tools import Boom, Gate

#: The ingress every double declares.
INGRESS = "in"


def event(payload: Any = None, **fields: Any) -> IngressEvent:
    """An event for the doubles' ingress; ``fields`` override any attribute."""
    ingress = fields.pop("ingress", INGRESS)
    source = fields.pop("source", "test")
    return IngressEvent(ingress, source, payload, **fields)


# ------------------------------------------------ recording doubles (ServicePlugin)
class Recorder(ServicePlugin):
    """Records every callback with the name of the thread it ran on, the payloads
    in the order they were handled, the events and the contexts. ``arrivals``
    receives each event as its handler is entered. Handles by echoing the payload.
    """

    ingresses = [Ingress(INGRESS)]

    def __init__(self) -> None:  # no super().__init__(): the base keeps no state
        self.calls: List[tuple] = []
        self.payloads: List[Any] = []
        self.events: List[IngressEvent] = []
        self.contexts: List[Any] = []
        self.arrivals: "queue.Queue[IngressEvent]" = queue.Queue()
        self.stopped = threading.Event()
        self._active = 0
        self.max_active = 0  # handlers running at once; serial dispatch keeps it 1
        self.busy_at_start: List[int] = []  # handlers still running when start() ran

    def start(self) -> None:
        self.calls.append(("start", threading.current_thread().name))
        self.busy_at_start.append(self._active)

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        self.calls.append(("handle_ingress", threading.current_thread().name))
        self.payloads.append(event.payload)
        self.events.append(event)
        self.contexts.append(ctx)
        self._active += 1
        self.max_active = max(self.max_active, self._active)
        self.arrivals.put(event)
        try:
            return self.behave(event, ctx)
        finally:
            self._active -= 1

    def behave(self, event: IngressEvent, ctx: Any) -> Any:
        return event.payload

    def stop(self) -> None:
        self.calls.append(("stop", threading.current_thread().name))
        self.stopped.set()

    def entered(self, timeout: float = HANG) -> IngressEvent:
        """The next event whose handler was entered (waits for it)."""
        return self.arrivals.get(timeout=timeout)


class Echo(Recorder):
    """Returns the payload."""


class Blocking(Recorder):
    """Blocks every handler on ``gate`` (ignoring cancellation), then echoes."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def behave(self, event, ctx):
        self.gate.wait()
        return event.payload


class Raising(Recorder):
    """Raises ``make_error(event)`` from every handler."""

    def __init__(self, make_error: Optional[Callable[[IngressEvent], BaseException]] = None):
        super().__init__()
        self.raised: List[BaseException] = []
        self.make_error = make_error or (lambda e: ValueError("boom %r" % (e.payload,)))

    def behave(self, event, ctx):
        error = self.make_error(event)
        self.raised.append(error)
        raise error


class Cooperative(Recorder):
    """Sleeps through ``ctx.wait(seconds)`` (default: until cancelled), records what
    it returned, then returns "cancelled" or "not cancelled"; sets ``returned``."""

    def __init__(self, seconds: Optional[float] = None) -> None:
        super().__init__()
        self.seconds = seconds
        self.woke_cancelled: List[bool] = []
        self.returned = threading.Event()

    def behave(self, event, ctx):
        try:
            self.woke_cancelled.append(ctx.wait(self.seconds))
            return "cancelled" if ctx.cancelled else "not cancelled"
        finally:
            self.returned.set()


class Uncooperative(Recorder):
    """Ignores cancellation: blocks on ``gate`` only; records ``ctx.cancelled`` on
    release and sets ``returned``."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.cancelled_at_return: List[bool] = []
        self.returned = threading.Event()

    def behave(self, event, ctx):
        try:
            self.gate.wait()
            self.cancelled_at_return.append(ctx.cancelled)
            return "late"
        finally:
            self.returned.set()


class Hold:
    """A payload for :class:`Scripted`: block on ``gate`` (ignoring cancellation,
    at most ``seconds`` when given), then raise ``raises`` or return "released"."""

    def __init__(self, gate: threading.Event, raises: Optional[BaseException] = None,
                 seconds: Optional[float] = None) -> None:
        self.gate = gate
        self.raises = raises
        self.seconds = seconds

    def __repr__(self) -> str:
        return "Hold(raises=%r)" % (self.raises,)


class Scripted(Recorder):
    """Behaves per payload: an exception is raised, a :class:`Hold` holds, "wait"
    sleeps through ``ctx.wait()`` until cancelled; anything else is echoed."""

    def behave(self, event, ctx):
        payload = event.payload
        if isinstance(payload, BaseException):
            raise payload
        if isinstance(payload, Hold):
            payload.gate.wait(payload.seconds)
            if payload.raises is not None:
                raise payload.raises
            return "released"
        if isinstance(payload, str) and payload == "wait":
            ctx.wait()
            return "woke"
        return payload


class FailingStart(Recorder):
    """``start()`` raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def start(self) -> None:
        super().start()
        raise self.error


class BlockingStart(Recorder):
    """``start()`` signals ``in_start`` and blocks on ``gate``."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.in_start = threading.Event()

    def start(self) -> None:
        super().start()
        self.in_start.set()
        self.gate.wait()


class FailingStop(Recorder):
    """``stop()`` raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def stop(self) -> None:
        super().stop()
        raise self.error


class Factory:
    """A zero-argument factory that builds ``make()`` and keeps every instance."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.built: List[Any] = []
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        instance = self.make()
        with self._lock:
            self.built.append(instance)
        return instance


# ---------------------------------------- minimal services for the tool and host tests
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
