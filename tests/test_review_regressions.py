"""Regressions found in review: bounds that must hold, threads that must not block.

Each test names the contract it protects; generous bounds only catch a hang.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any, List

import pytest
from support.timing import HANG

from plugin_service import (
    Ingress,
    IngressEvent,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    errors,
)


class HangsInStart(ServicePlugin):
    ingresses = [Ingress("in")]

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def start(self) -> None:
        self.release.wait(HANG)

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        return None


class IgnoresCancellation(ServicePlugin):
    ingresses = [Ingress("in")]

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        self.entered = entered
        self.release = release

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        self.entered.set()
        self.release.wait(HANG)  # ignores ctx on purpose
        return "late"


class ReturnsWhenCancelled(ServicePlugin):
    """Waits until its event is cancelled (at most ``HANG``), then returns "cancelled"."""

    ingresses = [Ingress("in")]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        ctx.wait(HANG)
        return "cancelled"


def test_start_all_bounds_every_service_by_one_timeout() -> None:
    release = threading.Event()
    try:
        with PluginHost() as host:
            for i in range(4):
                host.add_service("s%d" % i, HangsInStart(release))
            began = time.monotonic()
            with pytest.raises(errors.ServiceFailed) as raised:
                host.start_all(timeout=0.2)
            elapsed = time.monotonic() - began
            assert set(raised.value.services) == {"s0", "s1", "s2", "s3"}
            assert elapsed < 2.0  # one bound for all, not one after another
            release.set()
    finally:
        release.set()


def test_close_returns_within_its_timeout_with_an_uncooperative_handler() -> None:
    entered, release = threading.Event(), threading.Event()
    host = PluginHost()
    try:
        handle = host.add_service("stuck", IgnoresCancellation(entered, release),
                                  ServiceConfig(cancel_grace=None, dispatch_timeout=None))
        handle.start(timeout=HANG)
        future = handle.submit(IngressEvent("in", "test"))
        assert entered.wait(HANG)
        began = time.monotonic()
        host.close(timeout=0.2)
        assert time.monotonic() - began < 2.0
        assert handle.state.value == "failed"
        assert isinstance(future.exception(HANG), errors.DispatchTimeout)
        status = handle.status()
        assert status.counters.timed_out == 1 and status.failure is not None
    finally:
        release.set()
        host.close(timeout=HANG)


def test_stop_from_a_done_callback_on_the_watchdog_never_freezes_timeouts() -> None:
    with PluginHost() as host:
        first = host.add_service("first", ReturnsWhenCancelled,
                                 ServiceConfig(dispatch_timeout=0.05, fail_after=None))
        other = host.add_service("other", ReturnsWhenCancelled, ServiceConfig(dispatch_timeout=0.3))
        host.start_all(timeout=HANG)
        stopped: List[Any] = []
        timed_out = first.submit(IngressEvent("in", "test"))
        timed_out.add_done_callback(lambda f: stopped.append(first.stop(timeout=0.05)))
        assert isinstance(timed_out.exception(HANG), errors.DispatchTimeout)
        later = other.submit(IngressEvent("in", "test"))
        assert isinstance(later.exception(HANG), errors.DispatchTimeout)
        assert first.wait_for("stopped", HANG)
        assert stopped and stopped[0].state.value in ("stopping", "stopped")


def test_a_second_set_result_raises_without_blocking_other_futures() -> None:
    with PluginHost() as host:
        handle = host.add_service("svc", ReturnsWhenCancelled,
                                  ServiceConfig(dispatch_timeout=0.05, fail_after=None))
        handle.start(timeout=HANG)
        future = handle.submit(IngressEvent("in", "test"))
        future.exception(HANG)
        with pytest.raises(concurrent.futures.InvalidStateError):
            future.set_result(1)
        other = handle.submit(IngressEvent("in", "test"))
        done = threading.Event()
        other.add_done_callback(lambda f: done.set())
        assert done.wait(HANG)
