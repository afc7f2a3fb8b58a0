"""``drain_on_signals``: real signals sent to this process while a host runs.

The first stop signal only requests a stop; leaving the block closes the host,
draining; a second signal cuts that drain short. Synchronized on events, futures
and service states, never on sleeps.
"""
from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support.checks import outcome
from support.doubles import Blocking, Cooperative, event
from support.states import STOPPING
from support.timing import HANG

from plugin_service import PluginHost, drain_on_signals, errors

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")


@pytest.fixture
def handlers() -> Iterator[None]:
    """Whatever a test does, the process gets its own handlers back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        if handler is not None:
            signal.signal(signum, handler)


def test_first_signal_requests_a_stop_and_leaving_the_block_drains(
        host: PluginHost, start_service: Any, gates: Any, handlers: None) -> None:
    gate = gates.new()
    plugin = Blocking(gate)
    start_service("svc", plugin, stop_timeout=HANG)
    first = host.submit("svc", event(1))
    plugin.entered()
    second = host.submit("svc", event(2))  # queued behind the blocked handler
    with drain_on_signals(host) as stop:
        assert not stop.requested and stop.reason is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(HANG)
        assert (stop.requested, stop.reason, stop.forced) == (True, "SIGTERM", False)
        assert select.select([stop.fileno()], [], [], HANG)[0] == [stop.fileno()]
        assert not first.done()  # a request only: nothing was stopped yet
        gate.set()
    # Leaving the block drained: both events were delivered before close returned.
    assert (outcome(first, 0), outcome(second, 0)) == (1, 2)
    assert host.service("svc").state.value == "stopped"


def test_second_signal_cuts_the_drain_short(host: PluginHost, start_service: Any,
                                            background: Any, handlers: None) -> None:
    plugin = Cooperative()  # returns once cancelled
    handle = start_service("svc", plugin, stop_timeout=60.0, cancel_grace=HANG)
    running = host.submit("svc", event(1))
    plugin.entered()
    queued = host.submit("svc", event(2))
    pid = os.getpid()

    def interrupt_the_drain() -> None:
        assert handle.wait_for(STOPPING, HANG)  # close() is draining on the main thread
        os.kill(pid, signal.SIGINT)

    with drain_on_signals(host) as stop:
        os.kill(pid, signal.SIGTERM)
        assert stop.wait(HANG)
        sent = background(interrupt_the_drain)
    sent.result(HANG)
    # Without the second signal, close() would have waited for the 60 s stop bound.
    assert stop.forced
    assert outcome(running, 0) == "cancelled"
    assert isinstance(outcome(queued, 0), errors.ServiceStopped)
    assert handle.state.value == "stopped"


def test_on_signal_runs_off_the_main_thread_for_each_stop_signal(
        host: PluginHost, start_service: Any, handlers: None) -> None:
    start_service("svc", Cooperative(0))
    calls: list[tuple[str, bool, str]] = []
    seen_two = threading.Event()

    def on_signal(name: str, forced: bool) -> None:
        calls.append((name, forced, threading.current_thread().name))
        if forced:
            seen_two.set()

    with drain_on_signals(host, signals=[signal.SIGTERM], on_signal=on_signal) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(HANG)
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen_two.wait(HANG)
    assert [(name, forced) for name, forced, _ in calls] == [("SIGTERM", False),
                                                             ("SIGTERM", True)]
    assert all(thread != threading.main_thread().name for _, _, thread in calls)


def test_leaving_the_block_restores_the_previous_handlers_and_wakeup_fd(
        host: PluginHost, handlers: None) -> None:
    def mine(signum: int, frame: Any) -> None:
        pass

    signal.signal(signal.SIGTERM, mine)
    with drain_on_signals(host):
        assert signal.getsignal(signal.SIGTERM) is not mine
    assert signal.getsignal(signal.SIGTERM) is mine
    assert signal.set_wakeup_fd(-1) == -1  # ours is gone; none was set before


def test_off_the_main_thread_it_raises_a_lifecycle_error(host: PluginHost,
                                                         background: Any) -> None:
    with pytest.raises(errors.LifecycleError, match="main thread"):
        background(drain_on_signals, host).result(HANG)


def test_a_raising_on_signal_is_logged_redacted_without_frame_values(
        host: PluginHost, start_service: Any, handlers: None) -> None:
    from loguru import logger

    start_service("svc", Cooperative(0))
    lines: list[str] = []
    logged = threading.Event()

    def sink(message: Any) -> None:
        lines.append(str(message))
        if "handling raised" in message.record["message"]:
            logged.set()

    def on_signal(name: str, forced: bool) -> None:
        api_key = "l0cal-s3cr3t"  # noqa: F841 - a frame's value, for diagnose=True
        raise ValueError("token=s3cr3t-in-text")

    logger.enable("plugin_service")
    sink_id = logger.add(sink, level="DEBUG", filter="plugin_service", diagnose=True,
                         backtrace=True, format="{message}\n{exception}")
    try:
        with drain_on_signals(host, signals=[signal.SIGTERM], on_signal=on_signal) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(HANG)
            assert logged.wait(HANG)
    finally:
        logger.remove(sink_id)
        logger.disable("plugin_service")
    written = "\n".join(lines)
    assert "ValueError: token=***" in written and "in on_signal" in written
    assert "s3cr3t-in-text" not in written and "l0cal-s3cr3t" not in written, written
