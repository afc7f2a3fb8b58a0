"""Plugin doubles for the contract tests, importable by Ray worker processes.

Nothing here is shared between processes: a plugin's behaviour is driven by the
event's payload, ``(op, arg)``, and what it saw is reported back through its
return value, a follow-up ``("report", None)`` event or ``status()``. Blocking
uses a gate passed in the payload: a :class:`LocalGate` on the thread backend, a
:class:`RayGate` (a key on one :class:`GateKeeper` actor) on Ray; both have the
same ``pass_`` / ``entered`` / ``open`` methods.

This module imports neither pytest nor Ray at import time, so an actor process
loads it cheaply (as ``support.contract``: the workers have ``tests`` on their
``PYTHONPATH``); the test-side helpers are in ``support.backends``.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any, Dict, List, Mapping, Optional, Tuple

from plugin_service import DispatchContext, Ingress, IngressEvent, ServicePlugin, ToolContext
from support.timing import PROCESS_HANG

#: The ingress every double declares.
INGRESS = "in"


def event(op: str, arg: Any = None, **fields: Any) -> IngressEvent:
    """An event for :class:`OpScripted` asking it to do ``op`` with ``arg``."""
    source = fields.pop("source", "test")
    return IngressEvent(fields.pop("ingress", INGRESS), source, (op, arg), **fields)


# ------------------------------------------------------------------ gates
class LocalGate:
    """A gate for plugins on threads: ``pass_`` records the arrival and blocks
    (ignoring cancellation) until ``open``; not picklable, never needs to be."""

    def __init__(self) -> None:
        self._arrived = threading.Event()
        self._opened = threading.Event()

    def arrive(self) -> None:
        self._arrived.set()

    def pass_(self, timeout: Optional[float] = PROCESS_HANG) -> bool:
        self._arrived.set()
        return self._opened.wait(timeout)

    def entered(self, timeout: Optional[float] = PROCESS_HANG) -> bool:
        return self._arrived.wait(timeout)

    def open(self) -> None:
        self._opened.set()


class GateKeeper:
    """A Ray actor (async: every call runs on its event loop) keeping named gates.

    ``ray.remote(GateKeeper)`` is made by the test fixture; one keeper serves
    every :class:`RayGate` of a test session.
    """

    def __init__(self) -> None:
        self._arrived: Dict[str, asyncio.Event] = {}
        self._opened: Dict[str, asyncio.Event] = {}

    def _gate(self, table: Dict[str, asyncio.Event], key: str) -> asyncio.Event:
        if key not in table:
            table[key] = asyncio.Event()
        return table[key]

    async def arrive(self, key: str) -> None:
        self._gate(self._arrived, key).set()

    async def pass_(self, key: str, timeout: Optional[float]) -> bool:
        self._gate(self._arrived, key).set()
        return await self._wait(self._gate(self._opened, key), timeout)

    async def entered(self, key: str, timeout: Optional[float]) -> bool:
        return await self._wait(self._gate(self._arrived, key), timeout)

    async def open(self, key: str) -> None:
        self._gate(self._opened, key).set()

    @staticmethod
    async def _wait(gate: asyncio.Event, timeout: Optional[float]) -> bool:
        try:
            await asyncio.wait_for(gate.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


class RayGate:
    """A picklable gate across processes: one key on a :class:`GateKeeper` actor."""

    def __init__(self, keeper: Any) -> None:
        self._keeper = keeper
        self._key = uuid.uuid4().hex

    def _get(self, ref: Any) -> Any:
        import ray

        return ray.get(ref)

    def arrive(self) -> None:
        self._get(self._keeper.arrive.remote(self._key))

    def pass_(self, timeout: Optional[float] = PROCESS_HANG) -> bool:
        return bool(self._get(self._keeper.pass_.remote(self._key, timeout)))

    def entered(self, timeout: Optional[float] = PROCESS_HANG) -> bool:
        return bool(self._get(self._keeper.entered.remote(self._key, timeout)))

    def open(self) -> None:
        self._get(self._keeper.open.remote(self._key))


# ---------------------------------------------------------------- services
class OddError(Exception):
    """An exception pickle cannot rebuild: its ``__init__`` takes two arguments."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__("%s/%s" % (first, second))


class OpScripted(ServicePlugin):
    """Does what each event's payload ``(op, arg)`` says:

    * ``echo``: returns arg; ``event``: returns the event it got; ``count``: how many
      events this instance has handled; ``pid``: ``os.getpid()``; ``whoami``:
      ``(its class's name, os.getpid(), arg)``; ``thread``: the
      name of the thread it runs on; ``ctx``: what its context says (see
      :meth:`_context`); ``report``: the ``ctx.cancelled`` each blocking handler
      saw as it returned, oldest first.
    * ``raise``: raises ``ValueError(arg)``; ``fail_before``: raises until
      ``event.attempt`` reaches arg, then returns the attempt; ``raise_odd``: raises
      an :class:`OddError`; ``system_exit``: raises ``SystemExit(3)``.
    * blocking: ``wait`` returns what ``ctx.wait(arg)`` returned; ``block`` arrives
      at the gate arg (if any) and waits until cancelled, returning "woke";
      ``sleep`` ignores cancellation for arg seconds, returning "slept"; ``gate``
      passes the gate arg (ignoring cancellation), returning "released".
    * ``exit``: kills its own process; ``gate_exit``: passes the gate arg, then
      kills its own process; ``lock``: returns an unpicklable ``threading.Lock``.
    """

    ingresses = [Ingress(INGRESS)]

    def __init__(self) -> None:
        self.handled = 0
        self.cancel_seen: List[bool] = []

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> Any:
        self.handled += 1
        op, arg = event.payload
        if op in _BLOCKING:
            return self._block(op, arg, ctx)
        if op == "echo":
            return arg
        if op == "event":
            return event
        if op == "count":
            return self.handled
        if op == "pid":
            return os.getpid()
        if op == "whoami":
            return type(self).__name__, os.getpid(), arg
        if op == "thread":
            return threading.current_thread().name
        if op == "ctx":
            return self._context(event, ctx)
        if op == "report":
            return list(self.cancel_seen)
        return self._misbehave(op, arg, event)

    def _block(self, op: str, arg: Any, ctx: DispatchContext) -> Any:
        try:
            if op == "wait":
                return ctx.wait(arg)
            if op == "block":
                if arg is not None:
                    arg.arrive()
                ctx.wait()
                return "woke"
            if op == "sleep":
                time.sleep(arg)
                return "slept"
            arg.pass_()
            return "released"
        finally:
            self.cancel_seen.append(ctx.cancelled)

    @staticmethod
    def _context(event: IngressEvent, ctx: DispatchContext) -> Dict[str, Any]:
        """The context's API as the handler sees it."""
        return {"same_event": ctx.event == event, "cancelled": ctx.cancelled,
                "has_deadline": ctx.deadline is not None, "remaining": ctx.remaining(),
                "wait_returns": ctx.wait(0.001)}

    @staticmethod
    def _misbehave(op: str, arg: Any, event: IngressEvent) -> Any:
        if op == "raise":
            raise ValueError(arg)
        if op == "fail_before":
            if event.attempt < arg:
                raise ValueError("attempt %d failed" % event.attempt)
            return event.attempt
        if op == "raise_odd":
            raise OddError("odd", "error")
        if op == "system_exit":
            raise SystemExit(3)
        if op == "exit":
            os._exit(1)
        if op == "gate_exit":
            arg.pass_()
            os._exit(1)
        if op == "lock":
            return threading.Lock()
        raise LookupError("unknown op %r" % (op,))

    def status(self) -> Mapping[str, Any]:
        return {"handled": self.handled, "pid": os.getpid()}


_BLOCKING = frozenset({"wait", "block", "sleep", "gate"})


class Renamed(OpScripted):
    """``OpScripted`` under another name: what replaces it (``whoami`` tells)."""


class ExitOnStart(OpScripted):
    """``start()`` kills its own process."""

    def start(self) -> None:
        os._exit(1)


class CannotStart(OpScripted):
    """``start()`` raises ``RuntimeError("cannot start")``."""

    def start(self) -> None:
        raise RuntimeError("cannot start")


class HoldsLock(OpScripted):
    """An instance that cannot be pickled: it holds a ``threading.Lock``."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


class BrokenStatus(OpScripted):
    """``status()`` raises."""

    def status(self) -> Mapping[str, Any]:
        raise RuntimeError("no status")


def is_order(payload: Any) -> bool:
    """The validator of :class:`Strict`: a dict with a positive int ``qty``; raises
    for the payload "explode"."""
    if payload == "explode":
        raise RuntimeError("validator exploded")
    return isinstance(payload, dict) and isinstance(payload.get("qty"), int) \
        and payload["qty"] > 0


class Strict(ServicePlugin):
    """Accepts only kind "created" from source "shop" on ingress "orders", with a
    payload :func:`is_order` accepts; returns the quantity."""

    ingresses = [Ingress("orders", event_kinds=("created",), sources=("shop",),
                         validate=is_order)]

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> Any:
        return event.payload["qty"]


def order(payload: Any = None, **fields: Any) -> IngressEvent:
    """An event for :class:`Strict`; ``fields`` override ingress, source and kind."""
    ingress = fields.pop("ingress", "orders")
    source = fields.pop("source", "shop")
    fields.setdefault("kind", "created")
    return IngressEvent(ingress, source, {"qty": 1} if payload is None else payload, **fields)


# ------------------------------------------------------------------- tools
def tool_pid(request: Any, ctx: ToolContext) -> Tuple[Any, int]:
    """A tool answering ``(request, os.getpid())``."""
    return request, os.getpid()


def tool_raise(request: Any, ctx: ToolContext) -> Any:
    """A tool raising ``ValueError(request)``."""
    raise ValueError(request)


def tool_wait(request: Any, ctx: ToolContext) -> bool:
    """A tool sleeping through ``ctx.wait(request)``; returns whether it was cancelled."""
    return ctx.wait(request)


def tool_wait_then_arrive(request: Tuple[Any, Any, float], ctx: ToolContext) -> bool:
    """A tool taking ``(started, woke, seconds)``: arrives at gate ``started``, sleeps
    through ``ctx.wait(seconds)`` and, if that ended because the call was cancelled,
    arrives at gate ``woke``."""
    started, woke, seconds = request
    started.arrive()
    if ctx.wait(seconds):
        woke.arrive()
    return ctx.cancelled
