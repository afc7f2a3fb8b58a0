"""On Ray, ``status().handler_stack`` is the stack of the actor's handler thread,
read in the actor's process through a concurrency group of its own."""
from __future__ import annotations

import json
from typing import Any

from support.backends import BackendGates, failure_of, started
from support.stacks import SECRET, AtTheGate, gated, shown
from support.timing import PROCESS_HANG

from plugin_service import PluginHost


def test_an_overdue_handler_on_ray_shows_the_actors_stack(
        host: PluginHost, gates: BackendGates) -> None:
    handle = started(host, AtTheGate, dispatch_timeout=0.5, cancel_grace=PROCESS_HANG)
    gate = gates.new()
    future = handle.submit(gated(gate))
    assert gate.entered(PROCESS_HANG)
    failure_of(future)  # timed out: overdue, still inside the actor
    status = handle.status()
    assert status.overdue
    stack = status.handler_stack
    assert stack is not None and stack.unavailable is None, stack
    assert stack.thread.startswith("ray actor pid ")
    assert any((shown("AtTheGate.wait_at_the_gate") + ": gate.pass_()") in frame
               for frame in stack.frames)
    assert SECRET not in json.dumps(status.to_dict())


def test_stack_after_on_ray_shows_the_running_handlers_stack(
        host: PluginHost, gates: BackendGates) -> None:
    handle = started(host, AtTheGate, stack_after=0.0)
    gate = gates.new()
    future: Any = handle.submit(gated(gate))
    assert gate.entered(PROCESS_HANG)
    stack = handle.status().handler_stack
    assert stack is not None and stack.unavailable is None, stack
    assert any("wait_at_the_gate" in frame for frame in stack.frames)
    gate.open()
    assert future.result(timeout=PROCESS_HANG) == "passed"
    assert handle.status().handler_stack is None
