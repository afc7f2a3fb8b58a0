"""DispatchFuture: a concurrent.futures.Future the standard library works with;
done-callbacks run exactly once and never hurt the thread that resolves; cancel()
withdraws an event still in the queue, and nothing once dispatch has begun."""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import queue
import threading
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    CancelledError,
    Future,
    ThreadPoolExecutor,
)

import pytest
from loguru import logger
from support.checks import assert_invariants, outcome
from support.doubles import INGRESS, event
from support.states import RUNNING, STOPPED
from support.timing import HANG

from plugin_service import DiagnosticKind, DispatchFuture, Ingress, ServicePlugin, errors

#: A dispatch timeout short enough for a test to wait it out.
TINY = 0.05


class HoldThenRaise:
    """A payload: the handler waits for ``gate``, then raises ``error``."""

    def __init__(self, gate: threading.Event, error: BaseException) -> None:
        self.gate = gate
        self.error = error


class Script(ServicePlugin):
    """Behaves per payload: an exception is raised; a ``threading.Event`` is waited
    for (ignoring cancellation), then "released" returned; a :class:`HoldThenRaise`
    waits, then raises; "wait" sleeps through ``ctx.wait()`` until cancelled and
    returns "woke"; anything else is echoed. Records payloads and contexts;
    :meth:`entered` waits for the next handler to begin."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self) -> None:
        self.payloads = []
        self.contexts = []
        self.woke_cancelled = []
        self._arrivals = queue.Queue()

    def handle_ingress(self, event, ctx):
        payload = event.payload
        self.payloads.append(payload)
        self.contexts.append(ctx)
        self._arrivals.put(payload)
        if isinstance(payload, BaseException):
            raise payload
        if isinstance(payload, threading.Event):
            payload.wait(HANG)
            return "released"
        if isinstance(payload, HoldThenRaise):
            payload.gate.wait(HANG)
            raise payload.error
        if payload == "wait":
            self.woke_cancelled.append(ctx.wait(HANG))
            return "woke"
        return payload

    def entered(self):
        """The payload of the next event whose handler began (waits for it)."""
        return self._arrivals.get(timeout=HANG)


class CallbackLog:
    """A done-callback that records every call: the future and the thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = []  # (future, thread name, done at call time)
        self.called = threading.Event()

    def __call__(self, future) -> None:
        with self._lock:
            self.calls.append((future, threading.current_thread().name, future.done()))
        self.called.set()

    def count(self, future) -> int:
        with self._lock:
            return sum(1 for f, _, _ in self.calls if f is future)


class RaiseFromCallback:
    """A done-callback that raises ``error`` (after recording that it ran)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.threads = []

    def __call__(self, future) -> None:
        self.threads.append(threading.current_thread().name)
        raise self.error


@contextlib.contextmanager
def logged_exceptions(caplog):
    """The messages logged meanwhile at ERROR, through the standard ``logging``'s
    ``concurrent.futures`` logger (where a ``Future`` reports a raising callback,
    seen without enabling loguru) and through loguru (the library's log). Logs
    carry the exception's redacted text, never the exception object itself (a
    traceback formatter would print its text unredacted)."""
    found = []
    logger.enable("plugin_service")
    sink = logger.add(lambda message: found.append(message.record["message"]),
                      level="ERROR", format="{message}")
    try:
        with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
            yield found
    finally:
        logger.remove(sink)
        logger.disable("plugin_service")
        found += ["stdlib: " + r.getMessage() for r in caplog.records
                  if r.name == "concurrent.futures"]


def mentions(logged, error):
    """Both logs named ``error`` (its type and text)."""
    text = "%s: %s" % (type(error).__name__, error)
    return (any(text in m for m in logged if not m.startswith("stdlib: "))
            and any(text in m for m in logged if m.startswith("stdlib: ")))


def held_behind(start_service, gates, name="svc", **config):
    """A :class:`Script` service whose worker is held by a first event blocked on a gate:
    what is submitted next waits in the queue until ``gate.set()``."""
    plugin = Script()
    handle = start_service(name, plugin, **config)
    gate = gates.new()
    head = handle.submit(event(gate))
    assert plugin.entered() is gate
    return handle, plugin, gate, head


def every_outcome(start_service, gates, on_submit=lambda future: None):
    """One future of each outcome: succeeded, failed, timed out, dropped by stop,
    dropped by a failure, and withdrawn by cancel(). ``on_submit`` sees each future
    before it resolves. Returns {outcome: future}, all done."""
    echo, _, echo_gate, echo_head = held_behind(start_service, gates, "echo", fail_after=None)
    coop, _, coop_gate, coop_head = held_behind(start_service, gates, "coop",
                                                dispatch_timeout=TINY, fail_after=None)
    stops, _, stop_gate, stop_head = held_behind(start_service, gates, "stops")
    fails_gate = gates.new()
    fails_plugin = Script()
    fails = start_service("fails", fails_plugin, fail_after=1)
    fails.submit(event(HoldThenRaise(fails_gate, ValueError("fails the service"))))
    fails_plugin.entered()

    futures = {
        "succeeded": echo.submit(event("x")),
        "failed": echo.submit(event(ValueError("handler failed"))),
        "timed_out": coop.submit(event("wait")),
        "stopped": stops.submit(event("dropped by stop")),
        "cancelled": stops.submit(event("withdrawn")),
        "service_failed": fails.submit(event("dropped by failure")),
    }
    for future in futures.values():
        on_submit(future)
    assert futures["cancelled"].cancel() is True
    echo_gate.set()
    coop_gate.set()
    fails_gate.set()
    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(stops.stop, drain=False)
        assert isinstance(futures["stopped"].exception(timeout=HANG), errors.ServiceStopped)
        stop_gate.set()
        assert stopping.result(timeout=HANG).state is STOPPED
    expected = {
        "succeeded": "x",
        "failed": errors.DispatchFailed,
        "timed_out": errors.DispatchTimeout,
        "stopped": errors.ServiceStopped,
        "service_failed": errors.ServiceFailed,
    }
    for kind, what in expected.items():
        result = outcome(futures[kind])
        if isinstance(what, type):
            assert type(result) is what, (kind, result)
        else:
            assert result == what, kind
    assert futures["cancelled"].cancelled()
    assert echo_head.result(timeout=HANG) == "released"
    assert stop_head.result(timeout=HANG) == "released"
    return futures


# ------------------------------------------------------------ the standard library
def test_dispatch_future_is_a_concurrent_future_carrying_its_event(start_service):
    handle = start_service("svc", Script())
    sent = event("x")
    future = handle.submit(sent)
    assert isinstance(future, DispatchFuture)
    assert isinstance(future, Future)
    assert future.event is sent
    assert future.result(timeout=HANG) == "x"


def test_wait_all_completed_returns_every_outcome_done(start_service, gates):
    futures = every_outcome(start_service, gates)
    done, not_done = concurrent.futures.wait(list(futures.values()), timeout=HANG,
                                             return_when=ALL_COMPLETED)
    assert not_done == set()
    assert done == set(futures.values())


#: Enough for wait() to notice a future that is already done.
PROMPT = 1.0


def test_wait_counts_a_withdrawn_future_as_done(start_service, gates):
    handle, _, gate, head = held_behind(start_service, gates)
    withdrawn = handle.submit(event("withdrawn"))
    assert withdrawn.cancel() is True
    done, not_done = concurrent.futures.wait([withdrawn], timeout=PROMPT)
    assert (done, not_done) == ({withdrawn}, set())


def test_as_completed_yields_a_withdrawn_future(start_service, gates):
    handle, _, gate, head = held_behind(start_service, gates)
    withdrawn = handle.submit(event("withdrawn"))
    assert withdrawn.cancel() is True
    assert list(concurrent.futures.as_completed([withdrawn], timeout=PROMPT)) == [withdrawn]


def test_wait_first_exception_returns_once_a_handler_raised(start_service, gates):
    handle, plugin, gate, head = held_behind(start_service, gates, fail_after=None)
    second_gate = gates.new()
    ok = handle.submit(event(1))
    raising = handle.submit(event(ValueError("boom")))
    still_blocked = handle.submit(event(second_gate))
    gate.set()
    done, not_done = concurrent.futures.wait([ok, raising, still_blocked], timeout=HANG,
                                             return_when=FIRST_EXCEPTION)
    assert done == {ok, raising}
    assert not_done == {still_blocked}
    assert isinstance(raising.exception(timeout=0), errors.DispatchFailed)
    second_gate.set()
    assert still_blocked.result(timeout=HANG) == "released"


def test_wait_first_completed_returns_the_event_that_finished(start_service, gates):
    blocked, _, gate, head = held_behind(start_service, gates, "blocked")
    echo = start_service("echo", Script())
    quick = echo.submit(event("quick"))
    done, not_done = concurrent.futures.wait([head, quick], timeout=HANG,
                                             return_when=FIRST_COMPLETED)
    assert done == {quick}
    assert not_done == {head}
    gate.set()
    assert head.result(timeout=HANG) == "released"


def test_as_completed_yields_each_future_exactly_once(start_service, gates):
    futures = every_outcome(start_service, gates)
    yielded = list(concurrent.futures.as_completed(list(futures.values()), timeout=HANG))
    assert len(yielded) == len(futures)
    assert set(yielded) == set(futures.values())


def test_as_completed_waits_for_events_still_queued(start_service, gates):
    handle, _, gate, head = held_behind(start_service, gates)
    queued = [handle.submit(event(n)) for n in range(5)]
    with ThreadPoolExecutor(1) as pool:
        yielded = pool.submit(
            lambda: list(concurrent.futures.as_completed(queued + [head], timeout=HANG)))
        gate.set()
        got = yielded.result(timeout=HANG)
    assert len(got) == 6 and set(got) == set(queued + [head])
    assert [f.result(timeout=0) for f in queued] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------ done-callbacks
def test_done_callback_runs_exactly_once_for_every_outcome(host, start_service, gates):
    callback = CallbackLog()
    futures = every_outcome(start_service, gates,
                            on_submit=lambda f: f.add_done_callback(callback))
    host.close(timeout=HANG)  # every thread that could still call back is joined
    assert {kind: callback.count(f) for kind, f in futures.items()} == {
        "succeeded": 1, "failed": 1, "timed_out": 1, "stopped": 1, "service_failed": 1,
        "cancelled": 1}
    assert len(callback.calls) == 6
    assert all(done for _, _, done in callback.calls)


def test_done_callback_of_a_timed_out_event_runs_on_the_watchdog_not_the_worker(
        host, start_service, gates):
    handle, _, gate, head = held_behind(start_service, gates, dispatch_timeout=0.3,
                                        fail_after=None)
    callback = CallbackLog()
    late = handle.submit(event("wait"))
    late.add_done_callback(callback)
    gate.set()
    assert isinstance(late.exception(timeout=HANG), errors.DispatchTimeout)
    assert callback.called.wait(HANG)
    host.close(timeout=HANG)
    [(future, thread, done)] = callback.calls
    assert future is late and done
    # The handler is still inside ctx.wait() when its deadline passes: the timeout
    # is decided, and the callback run, by the host's watchdog thread.
    assert thread not in ("svc", threading.current_thread().name)


def test_done_callback_added_after_completion_runs_at_once_on_the_caller(start_service):
    handle = start_service("svc", Script())
    future = handle.submit(event("x"))
    assert future.result(timeout=HANG) == "x"
    callback = CallbackLog()
    future.add_done_callback(callback)
    assert callback.calls == [(future, threading.current_thread().name, True)]


def test_done_callback_of_a_cancelled_event_runs_on_the_cancelling_thread(start_service,
                                                                          gates):
    handle, _, gate, head = held_behind(start_service, gates)
    queued = handle.submit(event("x"))
    callback = CallbackLog()
    queued.add_done_callback(callback)
    assert queued.cancel() is True
    assert callback.calls == [(queued, threading.current_thread().name, True)]
    assert queued.cancel() is True  # already cancelled: no second call
    assert callback.count(queued) == 1


def test_raising_done_callback_is_logged_and_the_worker_serves_on(start_service, gates,
                                                                  caplog):
    handle, plugin, gate, head = held_behind(start_service, gates)
    error = RuntimeError("callback broke")
    raising = RaiseFromCallback(error)
    after = CallbackLog()
    with logged_exceptions(caplog) as logged:
        first = handle.submit(event(1))
        first.add_done_callback(raising)
        first.add_done_callback(after)
        gate.set()
        assert first.result(timeout=HANG) == 1
        assert handle.submit(event(2)).result(timeout=HANG) == 2
    assert raising.threads == ["svc"]  # it ran on the worker...
    assert after.count(first) == 1  # ...the callbacks after it still ran...
    assert mentions(logged, error)  # ...it was logged...
    assert handle.state is RUNNING  # ...and the worker went on serving
    assert plugin.payloads == [gate, 1, 2]
    status = handle.status()
    assert (status.counters.succeeded, status.counters.failed) == (3, 0)


@pytest.mark.parametrize("error_type", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_done_callback_raising_base_exception_is_logged_and_not_fatal_to_the_worker(
        start_service, gates, caplog, error_type):
    handle, plugin, gate, head = held_behind(start_service, gates)
    error = error_type("callback quit")
    raising = RaiseFromCallback(error)
    with logged_exceptions(caplog) as logged:
        first = handle.submit(event(1))
        first.add_done_callback(raising)
        gate.set()
        assert first.result(timeout=HANG) == 1
        assert handle.submit(event(2)).result(timeout=HANG) == 2
    assert raising.threads == ["svc"]
    assert mentions(logged, error)
    assert handle.state is RUNNING
    assert plugin.payloads == [gate, 1, 2]
    assert handle.status().counters.succeeded == 3


def test_done_callback_raising_base_exception_does_not_stop_the_watchdog(
        start_service, gates, caplog):
    handle, _, gate, head = held_behind(start_service, gates, dispatch_timeout=0.3,
                                        fail_after=None)
    raising = RaiseFromCallback(SystemExit("callback quit"))
    with logged_exceptions(caplog) as logged:
        first = handle.submit(event("wait"))
        first.add_done_callback(raising)
        second = handle.submit(event("wait"))
        gate.set()
        assert isinstance(first.exception(timeout=HANG), errors.DispatchTimeout)
        assert isinstance(second.exception(timeout=HANG), errors.DispatchTimeout)
    [thread] = raising.threads
    assert thread not in ("svc", threading.current_thread().name)  # the watchdog
    assert mentions(logged, raising.error)
    assert handle.status().counters.timed_out == 2


@pytest.mark.parametrize("error_type", [SystemExit, KeyboardInterrupt])
def test_callbacks_after_one_raising_base_exception_still_run(start_service, gates,
                                                              error_type):
    handle, _, gate, head = held_behind(start_service, gates)
    after = CallbackLog()
    first = handle.submit(event(1))
    first.add_done_callback(RaiseFromCallback(error_type("callback quit")))
    first.add_done_callback(after)
    gate.set()
    assert first.result(timeout=HANG) == 1
    assert handle.submit(event(2)).result(timeout=HANG) == 2  # the worker is past it
    assert after.count(first) == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_slow_done_callback_delays_the_next_event_without_timing_it_out(start_service,
                                                                        gates):
    handle, plugin, gate, head = held_behind(start_service, gates, dispatch_timeout=0.5,
                                             cancel_grace=1.0, stop_timeout=0.2,
                                             fail_after=None)
    never = threading.Event()
    first = handle.submit(event(1))
    second = handle.submit(event(2))
    first.add_done_callback(lambda f: never.wait(1.0))  # outlives second's dispatch_timeout
    gate.set()
    assert head.result(timeout=HANG) == "released"
    assert first.result(timeout=HANG) == 1
    assert second.result(timeout=HANG) == 2  # its timeout counts from its handler's start
    assert handle.submit(event(3)).result(timeout=HANG) == 3
    assert plugin.payloads == [gate, 1, 2, 3]


# ------------------------------------------------------------ cancel()
def test_cancel_of_a_queued_event_withdraws_it(host, start_service, gates):
    handle, plugin, gate, head = held_behind(start_service, gates)
    withdrawn = handle.submit(event("withdrawn"))
    kept = handle.submit(event("kept"))
    assert withdrawn.cancel() is True
    assert withdrawn.cancelled() and withdrawn.done()
    with pytest.raises(CancelledError):
        withdrawn.result(timeout=0)
    status = handle.status()
    assert (status.queue_depth, status.in_flight, status.counters.dropped) == (1, 1, 1)
    assert_invariants(status)
    gate.set()
    assert kept.result(timeout=HANG) == "kept"
    assert plugin.payloads == [gate, "kept"]  # the plugin never saw it
    counters = handle.status().counters
    assert (counters.enqueued, counters.dispatched, counters.succeeded, counters.dropped,
            counters.failed, counters.timed_out) == (3, 2, 2, 1, 0, 0)
    assert_invariants(handle.status())
    assert host.dead_letters() == []  # the caller chose it: no dead letter


def test_cancel_twice_counts_one_drop(start_service, gates):
    handle, _, gate, head = held_behind(start_service, gates)
    withdrawn = handle.submit(event("withdrawn"))
    assert withdrawn.cancel() is True
    assert withdrawn.cancel() is True
    assert handle.status().counters.dropped == 1
    assert_invariants(handle.status())


def test_cancel_frees_its_queue_slot(start_service, gates):
    handle, _, gate, head = held_behind(start_service, gates, queue_size=1)
    withdrawn = handle.submit(event("withdrawn"))
    with pytest.raises(errors.QueueFull):
        handle.submit(event("no room"))
    assert withdrawn.cancel() is True
    room = handle.submit(event("room"))
    gate.set()
    assert room.result(timeout=HANG) == "room"


def test_cancel_once_dispatch_began_returns_false_and_the_event_runs_on(host, start_service,
                                                                        gates):
    handle, plugin, gate, running = held_behind(start_service, gates)
    assert running.cancel() is False
    assert not running.cancelled()
    assert running.running()
    assert plugin.contexts[0].cancelled is False  # cancel() does not reach the handler
    gate.set()
    assert running.result(timeout=HANG) == "released"
    counters = handle.status().counters
    assert (counters.succeeded, counters.dropped) == (1, 0)
    assert host.dead_letters() == []


def test_running_handler_cooperates_through_ctx_not_cancel(host, start_service):
    plugin = Script()
    handle = start_service("svc", plugin, dispatch_timeout=TINY, fail_after=None)
    running = handle.submit(event("wait"))
    plugin.entered()
    assert running.cancel() is False
    assert isinstance(running.exception(timeout=HANG), errors.DispatchTimeout)
    next_one = handle.submit(event("wait"))  # served next, timed out alike
    assert isinstance(next_one.exception(timeout=HANG), errors.DispatchTimeout)
    assert handle.submit(event("x")).result(timeout=HANG) == "x"  # both handlers returned
    assert plugin.woke_cancelled == [True, True]
    counters = handle.status().counters
    assert (counters.timed_out, counters.succeeded, counters.dropped) == (2, 1, 0)
    kinds = [letter.diagnostic.kind for letter in host.dead_letters()]
    assert kinds == [DiagnosticKind.DISPATCH_TIMEOUT, DiagnosticKind.DISPATCH_TIMEOUT]


def test_cancel_of_a_finished_future_returns_false(start_service):
    handle = start_service("svc", Script())
    future = handle.submit(event("x"))
    assert future.result(timeout=HANG) == "x"
    assert future.cancel() is False
    assert not future.cancelled()
    assert handle.status().counters.dropped == 0


def test_cancel_of_an_event_dropped_by_stop_returns_false(host, start_service, gates):
    handle, _, gate, head = held_behind(start_service, gates)
    dropped = handle.submit(event("dropped"))
    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(handle.stop, drain=False)
        assert isinstance(dropped.exception(timeout=HANG), errors.ServiceStopped)
        assert dropped.cancel() is False
        gate.set()
        stopping.result(timeout=HANG)
    assert not dropped.cancelled()
    assert handle.status().counters.dropped == 1
    assert [letter.diagnostic.kind for letter in host.dead_letters()] == [
        DiagnosticKind.SERVICE_STOPPED]


def test_cancelled_and_served_events_keep_their_order(start_service, gates):
    handle, plugin, gate, head = held_behind(start_service, gates, queue_size=16)
    futures = [handle.submit(event(n)) for n in range(10)]
    for future in futures[1::2]:
        assert future.cancel() is True
    gate.set()
    assert [f.result(timeout=HANG) for f in futures[0::2]] == [0, 2, 4, 6, 8]
    assert plugin.payloads == [gate, 0, 2, 4, 6, 8]
    counters = handle.status().counters
    assert (counters.enqueued, counters.succeeded, counters.dropped) == (11, 6, 5)
    assert collections.Counter(f.cancelled() for f in futures) == {True: 5, False: 5}
