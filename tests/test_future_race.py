"""The lazily made condition of a DispatchFuture never loses a wake-up.

A DispatchFuture makes its condition only when someone waits on it; until then
the worker settles it without one. These tests line every kind of waiter up on a
barrier with the release of the handler, so creation and settling race, many
times over, and check that every waiter returns and every callback runs once.
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable, List

import pytest
from support.timing import HANG

from plugin_service import Ingress, IngressEvent, PluginHost, ServiceConfig, ServicePlugin

ROUNDS = 300


class AtBarrier(ServicePlugin):
    """Each handler waits for the test's barrier, so its return races the waiters."""

    ingresses = [Ingress("in")]

    def __init__(self) -> None:
        self.barrier: Any = None

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        self.barrier.wait(HANG)
        if event.payload == "raise":
            raise ValueError("planned")
        return event.payload


def _waiters(future: Any, seen: List[str], lock: threading.Lock
             ) -> List[Callable[[], None]]:
    def record(what: str) -> None:
        with lock:
            seen.append(what)

    def by_result() -> None:
        try:
            future.result(HANG)
        except ValueError:
            pass
        except Exception as exc:  # DispatchFailed wraps the ValueError
            assert exc.__cause__ is not None
        record("result")

    def by_exception() -> None:
        future.exception(HANG)
        record("exception")

    def by_wait() -> None:
        done, _ = concurrent.futures.wait([future], timeout=HANG)
        assert done == {future}
        record("wait")

    def by_as_completed() -> None:
        assert list(concurrent.futures.as_completed([future], timeout=HANG)) == [future]
        record("as_completed")

    def by_callback() -> None:
        future.add_done_callback(lambda f: record("callback"))

    return [by_result, by_exception, by_wait, by_as_completed, by_callback]


@pytest.mark.parametrize("payload", ["value", "raise"])
def test_every_waiter_wakes_when_settling_races_condition_creation(payload: str) -> None:
    plugin = AtBarrier()
    with PluginHost() as host:
        handle = host.add_service("race", plugin, ServiceConfig(fail_after=None))
        handle.start(timeout=HANG)
        for _ in range(ROUNDS):
            seen: List[str] = []
            lock = threading.Lock()
            plugin.barrier = threading.Barrier(6)  # five waiters and the handler
            future = handle.submit(IngressEvent("in", "test", payload))
            waiters = _waiters(future, seen, lock)
            threads = [threading.Thread(target=lambda w=w: (plugin.barrier.wait(HANG), w()))
                       for w in waiters]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(HANG)
            assert not any(thread.is_alive() for thread in threads)
            assert future.done()
            assert sorted(seen) == sorted(
                ["result", "exception", "wait", "as_completed", "callback"])
        status = handle.status()
        assert status.counters.succeeded + status.counters.failed == ROUNDS


def test_a_future_settled_before_anyone_waited_answers_without_a_condition() -> None:
    plugin = AtBarrier()
    plugin.barrier = threading.Barrier(1)
    with PluginHost() as host:
        handle = host.add_service("early", plugin)
        handle.start(timeout=HANG)
        first = handle.submit(IngressEvent("in", "test", 1))
        last = handle.submit(IngressEvent("in", "test", 2))
        assert last.result(HANG) == 2  # FIFO: the first is settled by now
        assert first.done() and not first.running()
        assert first._cond is None  # nobody ever had to wait on it
        assert first.result() == 1
        assert concurrent.futures.wait([first], timeout=0).done == {first}
