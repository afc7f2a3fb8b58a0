"""``status().handler_stack``: where a handler that is overdue, or has run
``ServiceConfig.stack_after`` seconds, is; bounded, redacted, read only then."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from support.contract import LocalGate
from support.stacks import SECRET, AtTheGate, gated, shown
from support.timing import HANG, SHORT

from plugin_service import HandlerStack, IngressEvent, PluginHost, ServiceConfig, ServiceHandle
from plugin_service._stacks import STACK_FRAMES, STACK_LINE


@pytest.fixture
def gate() -> Iterator[Any]:
    made = LocalGate()
    yield made
    made.open()


def _started(host: PluginHost, **config: Any) -> ServiceHandle:
    handle = host.add_service("svc", AtTheGate(), ServiceConfig(**config))
    handle.start(timeout=HANG)
    return handle


def _text(stack: HandlerStack) -> str:
    return json.dumps(stack.to_dict())


def test_an_overdue_handler_shows_its_stack_with_the_plugins_function(
        host: PluginHost, gate: Any) -> None:
    handle = _started(host, dispatch_timeout=SHORT, cancel_grace=HANG)
    future = handle.submit(gated(gate))
    assert future.exception(timeout=HANG) is not None  # timed out: now overdue
    status = handle.status()
    assert status.overdue
    stack = status.handler_stack
    assert stack is not None and stack.unavailable is None
    assert any((shown("AtTheGate.wait_at_the_gate") + ": gate.pass_()") in frame for frame in stack.frames)
    assert stack.thread == "svc"
    assert stack.running_for is not None and stack.running_for >= SHORT


def test_a_handler_past_stack_after_shows_its_stack_before_it_is_overdue(
        host: PluginHost, gate: Any) -> None:
    handle = _started(host, stack_after=0.0)
    handle.submit(gated(gate))
    assert gate.entered(HANG)
    status = handle.status()
    assert not status.overdue
    assert status.handler_stack is not None
    assert any(shown("AtTheGate.wait_at_the_gate") in frame for frame in status.handler_stack.frames)


def test_stack_after_without_a_dispatch_timeout_still_knows_when_the_handler_began(
        host: PluginHost, gate: Any) -> None:
    handle = _started(host, stack_after=0.0, dispatch_timeout=None)
    handle.submit(gated(gate))
    assert gate.entered(HANG)
    stack = handle.status().handler_stack
    assert stack is not None and stack.running_for is not None
    assert any("wait_at_the_gate" in frame for frame in stack.frames)


def test_a_handler_short_of_stack_after_shows_no_stack(host: PluginHost, gate: Any) -> None:
    handle = _started(host, stack_after=3600.0)
    handle.submit(gated(gate))
    assert gate.entered(HANG)
    assert handle.status().handler_stack is None


def test_a_quick_handler_leaves_no_stack(host: PluginHost) -> None:
    handle = _started(host, stack_after=0.0)
    assert handle.submit(IngressEvent("in", "test", "now")).result(timeout=HANG) == "quick"
    assert handle.status().handler_stack is None


def test_a_running_handler_is_not_overdue_so_by_default_shows_no_stack(
        host: PluginHost, gate: Any) -> None:
    handle = _started(host)  # stack_after=None: only an overdue handler's stack
    handle.submit(gated(gate))
    assert gate.entered(HANG)
    assert handle.status().handler_stack is None


def test_a_deep_stack_keeps_only_its_innermost_frames_each_bounded(
        host: PluginHost, gate: Any) -> None:
    handle = _started(host, stack_after=0.0)
    handle.submit(gated(gate, depth=3 * STACK_FRAMES))
    assert gate.entered(HANG)
    stack = handle.status().handler_stack
    assert stack is not None
    assert len(stack.frames) == STACK_FRAMES
    assert stack.omitted > 2 * STACK_FRAMES
    assert all(len(frame) <= STACK_LINE + 1 for frame in stack.frames)
    assert shown("LocalGate.pass_") in "".join(stack.frames[-4:])  # the innermost kept


def test_neither_a_local_variable_nor_the_payload_reaches_the_stack(
        host: PluginHost, gate: Any) -> None:
    handle = _started(host, stack_after=0.0)
    handle.submit(gated(gate))
    assert gate.entered(HANG)
    status = handle.status()
    assert status.handler_stack is not None
    assert SECRET not in _text(status.handler_stack)
    assert SECRET not in json.dumps(status.to_dict())
    assert SECRET not in repr(status)


def test_a_secret_written_in_a_source_line_is_redacted(
        host: PluginHost, tmp_path: Path) -> None:
    module = tmp_path / "wired_in.py"
    module.write_text(textwrap.dedent('''
        def handle(gate):
            gate.pass_(); api_token = "s3cr3t-in-source"
    '''))
    namespace: Dict[str, Any] = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)

    class WiredIn(AtTheGate):
        def wait_at_the_gate(self, gate: Any) -> Any:
            return namespace["handle"](gate)

    handle = host.add_service("svc", WiredIn(), ServiceConfig(stack_after=0.0))
    handle.start(timeout=HANG)
    gate = LocalGate()
    try:
        handle.submit(gated(gate))
        assert gate.entered(HANG)
        stack = handle.status().handler_stack
    finally:
        gate.open()
    assert stack is not None
    (line,) = [frame for frame in stack.frames if "wired_in.py" in frame]
    assert "api_token" in line and "s3cr3t-in-source" not in line and "***" in line


def test_the_stack_is_in_the_host_status_export(host: PluginHost, gate: Any) -> None:
    _started(host, stack_after=0.0).submit(gated(gate))
    assert gate.entered(HANG)
    exported = host.status().to_dict()["services"]["svc"]["handler_stack"]
    assert exported["thread"] == "svc"
    assert any("wait_at_the_gate" in frame for frame in exported["frames"])
    json.dumps(exported)


def test_stack_after_refuses_a_negative_number() -> None:
    with pytest.raises(ValueError, match="stack_after"):
        ServiceConfig(stack_after=-1.0)
