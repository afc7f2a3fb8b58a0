"""CPython's Future, wait() and as_completed() tests, run against our futures.

The first three sections follow the ``FutureTests``, ``WaitTests`` and
``AsCompletedTests`` classes and the ``create_future`` helper of CPython 3.11's
``Lib/test/test_concurrent_futures.py`` (split into ``test_future.py``,
``test_wait.py`` and ``test_as_completed.py`` under
``Lib/test/test_concurrent_futures/`` from 3.12). That suite is Copyright (c) Python
Software Foundation, under the PSF License Agreement. The installed Python ships
without ``test.test_concurrent_futures``, so the tests live here. Adapted, test for
test, and rewritten for pytest:

* ``create_future(state, exception, result)`` builds each future from a factory
  parametrized over ``concurrent.futures.Future`` (the control: every test passes on
  it), ``GuardedFuture`` (what a tool call returns) and a free-standing
  ``DispatchFuture``; like CPython's helper it sets ``_state``, ``_exception`` and
  ``_result`` directly, which is legitimate for all three (they share Future's
  fields). The module-level futures (``PENDING_FUTURE`` ...) are made per test.
* Futures CPython got from ``executor.submit(...)`` are resolved here by a helper
  thread once the test's thread is provably blocked on them (in ``result()`` /
  ``exception()``: waiting on the future's condition; in ``wait()`` /
  ``as_completed()``: its waiter installed), instead of ``time.sleep`` and executor
  jobs. A short timeout is used only where CPython asserts that a timeout happens.
* Output CPython read from stderr is read from the ``concurrent.futures`` logger
  (through ``caplog``); reprs name the future's own class.
* Left out: ``test_class_str`` (about the module's classes, not a future) and
  ``test_get_snapshot`` (``Future._get_snapshot`` came after 3.11; 3.11 has none).

The fourth section adds what CPython cannot test: that an exception whose
``__bool__`` is False still reaches a waiter, and that a raising done-callback is
reported on ``concurrent.futures`` without the exception's text. The last section
runs the same kind of checks on futures from a real host: ``svc.submit(...)`` and
``host.submit_tool(...)``.

They are here so that a Python upgrade that changes ``concurrent.futures``
internals, which DispatchFuture's lazily made condition relies on, fails loudly.
"""
from __future__ import annotations

import gc
import itertools
import logging
import queue
import re
import sys
import threading
import time
import weakref
from concurrent import futures
from concurrent.futures import Future
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from types import SimpleNamespace
from typing import Any, Callable, Optional

import pytest
from support.doubles import Hold, Scripted, event
from support.timing import HANG

from plugin_service import IngressEvent, PluginHost, errors
from plugin_service._future import DispatchFuture, GuardedFuture

#: How long wait()/as_completed() get where CPython asserts that they time out.
SHORT_TIMEOUT = 0.05


def _plain() -> Future:
    return Future()


def _guarded() -> Future:
    return GuardedFuture()


def _dispatch() -> Future:
    return DispatchFuture(IngressEvent("in", "test"), None)


MAKERS = {"Future": _plain, "GuardedFuture": _guarded, "DispatchFuture": _dispatch}
OURS = ["GuardedFuture", "DispatchFuture"]


@pytest.fixture(params=list(MAKERS))
def new_future(request) -> Callable[[], Future]:
    """A zero-argument constructor of the future under test (CPython's ``Future()``)."""
    return MAKERS[request.param]


@pytest.fixture(params=OURS)
def our_future(request) -> Callable[[], Future]:
    """Like ``new_future``, without the control."""
    return MAKERS[request.param]


@pytest.fixture
def create_future(new_future):
    """CPython's ``create_future(state, exception, result)``, for the future under test."""

    def create(state=PENDING, exception=None, result=None):
        f = new_future()
        f._state = state
        f._exception = exception
        f._result = result
        return f

    return create


@pytest.fixture
def made(create_future):
    """CPython's module-level futures, made afresh for each test."""
    return SimpleNamespace(
        pending=create_future(state=PENDING),
        running=create_future(state=RUNNING),
        cancelled=create_future(state=CANCELLED),
        cancelled_and_notified=create_future(state=CANCELLED_AND_NOTIFIED),
        exception=create_future(state=FINISHED, exception=OSError()),
        successful=create_future(state=FINISHED, result=42),
    )


# ------------------------------------------------------------------ the helper
class Resolver:
    """Runs ``action`` on its own thread as soon as ``ready()`` holds.

    ``ready`` tests a state the test's thread reaches only once it is blocked (a
    waiter on the future's condition, a waiter installed by wait()); it is checked
    every millisecond, for at most ``HANG``. :meth:`join` re-raises what went wrong.
    """

    def __init__(self, ready: Callable[[], Any], action: Callable[[], Any]) -> None:
        self._ready = ready
        self._action = action
        self.error: Optional[BaseException] = None
        self.ran = False
        self._thread = threading.Thread(target=self._run, name="test-resolver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = threading.Event()
        deadline = time.monotonic() + HANG
        try:
            while not self._ready():
                if time.monotonic() > deadline:
                    raise AssertionError("nobody ever blocked on the future")
                tick.wait(0.001)
            self.ran = True
            self._action()
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(HANG)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error
        assert self.ran


def blocked_on_condition(f: Future) -> Callable[[], bool]:
    """Someone waits on ``f``'s condition: in result(), exception() (of a pending f).

    Reading ``f._condition`` makes a DispatchFuture's condition, as any waiter would."""
    cond = f._condition
    return lambda: bool(cond._waiters)  # type: ignore[attr-defined]


def waited_by_wait(f: Future) -> Callable[[], bool]:
    """wait() or as_completed() installed its waiter on ``f``."""
    return lambda: bool(f._waiters)  # type: ignore[attr-defined]


def when(ready: Callable[[], Any], action: Callable[[], Any]) -> Resolver:
    return Resolver(ready, action)


def callback_records(caplog) -> list:
    return [r for r in caplog.records
            if r.name == "concurrent.futures" and r.levelno >= logging.ERROR]


# ====================================================================== FutureTests
def test_done_callback_with_result(new_future):
    callback_result = []
    f = new_future()
    f.add_done_callback(lambda cf: callback_result.append(cf.result()))
    f.set_result(5)
    assert callback_result == [5]


def test_done_callback_with_exception(new_future):
    callback_exception = []
    f = new_future()
    f.add_done_callback(lambda cf: callback_exception.append(cf.exception()))
    f.set_exception(Exception("test"))
    [error] = callback_exception
    assert error.args == ("test",)


def test_done_callback_with_cancel(new_future):
    was_cancelled = []
    f = new_future()
    f.add_done_callback(lambda cf: was_cancelled.append(cf.cancelled()))
    assert f.cancel()
    assert was_cancelled == [True]


def test_done_callback_raises(new_future, caplog):
    called = []

    def raising_fn(cf):
        called.append("raising")
        raise Exception("doh!")

    f = new_future()
    f.add_done_callback(raising_fn)
    f.add_done_callback(lambda cf: called.append("fn"))
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        f.set_result(5)
    assert called == ["raising", "fn"]
    assert callback_records(caplog)  # CPython: 'Exception: doh!' on stderr


def test_done_callback_already_successful(new_future):
    callback_result = []
    f = new_future()
    f.set_result(5)
    f.add_done_callback(lambda cf: callback_result.append(cf.result()))
    assert callback_result == [5]


def test_done_callback_already_failed(new_future):
    callback_exception = []
    f = new_future()
    f.set_exception(Exception("test"))
    f.add_done_callback(lambda cf: callback_exception.append(cf.exception()))
    [error] = callback_exception
    assert error.args == ("test",)


def test_done_callback_already_cancelled(new_future):
    was_cancelled = []
    f = new_future()
    assert f.cancel()
    f.add_done_callback(lambda cf: was_cancelled.append(cf.cancelled()))
    assert was_cancelled == [True]


def test_done_callback_raises_already_succeeded(new_future, caplog):
    def raising_fn(cf):
        raise Exception("doh!")

    f = new_future()
    # Set the result first, so the callback runs at once, on this thread.
    f.set_result(5)
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        f.add_done_callback(raising_fn)
    # CPython: 'exception calling callback for' and 'doh!' on stderr.
    assert callback_records(caplog)


def test_repr(made):
    name = type(made.pending).__name__
    at = "<%s at 0x[0-9a-f]+ state=" % name
    assert_matches = re.fullmatch
    assert assert_matches(at + "pending>", repr(made.pending))
    assert assert_matches(at + "running>", repr(made.running))
    assert assert_matches(at + "cancelled>", repr(made.cancelled))
    assert assert_matches(at + "cancelled>", repr(made.cancelled_and_notified))
    assert assert_matches(at + "finished raised OSError>", repr(made.exception))
    assert assert_matches(at + "finished returned int>", repr(made.successful))


def test_cancel(create_future):
    f1 = create_future(state=PENDING)
    f2 = create_future(state=RUNNING)
    f3 = create_future(state=CANCELLED)
    f4 = create_future(state=CANCELLED_AND_NOTIFIED)
    f5 = create_future(state=FINISHED, exception=OSError())
    f6 = create_future(state=FINISHED, result=5)

    assert f1.cancel() is True
    assert f1._state == CANCELLED
    assert f2.cancel() is False
    assert f2._state == RUNNING
    assert f3.cancel() is True
    assert f3._state == CANCELLED
    assert f4.cancel() is True
    assert f4._state == CANCELLED_AND_NOTIFIED
    assert f5.cancel() is False
    assert f5._state == FINISHED
    assert f6.cancel() is False
    assert f6._state == FINISHED


def test_cancelled(made):
    assert not made.pending.cancelled()
    assert not made.running.cancelled()
    assert made.cancelled.cancelled()
    assert made.cancelled_and_notified.cancelled()
    assert not made.exception.cancelled()
    assert not made.successful.cancelled()


def test_done(made):
    assert not made.pending.done()
    assert not made.running.done()
    assert made.cancelled.done()
    assert made.cancelled_and_notified.done()
    assert made.exception.done()
    assert made.successful.done()


def test_running(made):
    assert not made.pending.running()
    assert made.running.running()
    assert not made.cancelled.running()
    assert not made.cancelled_and_notified.running()
    assert not made.exception.running()
    assert not made.successful.running()


def test_result_with_timeout(made):
    with pytest.raises(futures.TimeoutError):
        made.pending.result(timeout=0)
    with pytest.raises(futures.TimeoutError):
        made.running.result(timeout=0)
    with pytest.raises(futures.CancelledError):
        made.cancelled.result(timeout=0)
    with pytest.raises(futures.CancelledError):
        made.cancelled_and_notified.result(timeout=0)
    with pytest.raises(OSError):
        made.exception.result(timeout=0)
    assert made.successful.result(timeout=0) == 42


def test_result_with_success(create_future):
    f1 = create_future(state=PENDING)
    resolver = when(blocked_on_condition(f1), lambda: f1.set_result(42))
    assert f1.result(timeout=HANG) == 42
    resolver.join()


def test_result_with_cancel(create_future):
    f1 = create_future(state=PENDING)
    resolver = when(blocked_on_condition(f1), f1.cancel)
    with pytest.raises(futures.CancelledError):
        f1.result(timeout=HANG)
    resolver.join()


def test_exception_with_timeout(made):
    with pytest.raises(futures.TimeoutError):
        made.pending.exception(timeout=0)
    with pytest.raises(futures.TimeoutError):
        made.running.exception(timeout=0)
    with pytest.raises(futures.CancelledError):
        made.cancelled.exception(timeout=0)
    with pytest.raises(futures.CancelledError):
        made.cancelled_and_notified.exception(timeout=0)
    assert isinstance(made.exception.exception(timeout=0), OSError)
    assert made.successful.exception(timeout=0) is None


def test_exception_with_success(create_future):
    f1 = create_future(state=PENDING)

    def notification():
        with f1._condition:
            f1._state = FINISHED
            f1._exception = OSError()
            f1._condition.notify_all()

    resolver = when(blocked_on_condition(f1), notification)
    assert isinstance(f1.exception(timeout=HANG), OSError)
    resolver.join()


def test_exception_with_set_exception_from_another_thread(create_future):
    # Not in CPython: the same through the public set_exception().
    f1 = create_future(state=PENDING)
    error = OSError("late")
    resolver = when(blocked_on_condition(f1), lambda: f1.set_exception(error))
    assert f1.exception(timeout=HANG) is error
    resolver.join()


def test_multiple_set_result(create_future):
    f = create_future(state=PENDING)
    f.set_result(1)
    with pytest.raises(futures.InvalidStateError,
                       match="FINISHED: <%s at 0x[0-9a-f]+ state=finished returned int>"
                       % type(f).__name__):
        f.set_result(2)
    assert f.done()
    assert f.result() == 1


def test_multiple_set_exception(create_future):
    f = create_future(state=PENDING)
    e = ValueError()
    f.set_exception(e)
    with pytest.raises(futures.InvalidStateError,
                       match="FINISHED: <%s at 0x[0-9a-f]+ state=finished raised ValueError>"
                       % type(f).__name__):
        f.set_exception(Exception())
    assert f.exception() is e


# ======================================================================== WaitTests
def test_20369(new_future):
    # https://bugs.python.org/issue20369: a future listed twice is reported once.
    future = new_future()
    resolver = when(waited_by_wait(future), lambda: future.set_result(2))
    done, not_done = futures.wait([future, future], timeout=HANG,
                                  return_when=futures.ALL_COMPLETED)
    resolver.join()
    assert done == {future}
    assert not_done == set()


def test_first_completed(made, new_future):
    future1 = new_future()
    future2 = new_future()  # never resolved
    resolver = when(waited_by_wait(future1), lambda: future1.set_result(42))
    done, not_done = futures.wait([made.cancelled, future1, future2], timeout=HANG,
                                  return_when=futures.FIRST_COMPLETED)
    resolver.join()
    assert done == {future1}
    assert not_done == {made.cancelled, future2}


def test_first_completed_some_already_completed(made, new_future):
    future1 = new_future()  # never resolved
    finished, pending = futures.wait(
        [made.cancelled_and_notified, made.successful, future1], timeout=HANG,
        return_when=futures.FIRST_COMPLETED)
    assert finished == {made.cancelled_and_notified, made.successful}
    assert pending == {future1}


def test_first_exception(new_future):
    future1 = new_future()
    future2 = new_future()
    future3 = new_future()  # never resolved

    def resolve():  # future1 completes before future2 fails
        future1.set_result(42)
        future2.set_exception(Exception("this is an exception"))

    resolver = when(waited_by_wait(future1), resolve)
    finished, pending = futures.wait([future1, future2, future3], timeout=HANG,
                                     return_when=futures.FIRST_EXCEPTION)
    resolver.join()
    assert finished == {future1, future2}
    assert pending == {future3}


def test_first_exception_some_already_complete(made, new_future):
    future1 = new_future()
    future2 = new_future()  # never resolved
    resolver = when(waited_by_wait(future1),
                    lambda: future1.set_exception(ZeroDivisionError("divmod(21, 0)")))
    finished, pending = futures.wait(
        [made.successful, made.cancelled, made.cancelled_and_notified, future1, future2],
        timeout=HANG, return_when=futures.FIRST_EXCEPTION)
    resolver.join()
    assert finished == {made.successful, made.cancelled_and_notified, future1}
    assert pending == {made.cancelled, future2}


def test_first_exception_one_already_failed(made, new_future):
    future1 = new_future()  # never resolved
    finished, pending = futures.wait([made.exception, future1], timeout=HANG,
                                     return_when=futures.FIRST_EXCEPTION)
    assert finished == {made.exception}
    assert pending == {future1}


def test_all_completed(made, new_future):
    future1 = new_future()
    future2 = new_future()

    def resolve():
        future1.set_exception(ZeroDivisionError("divmod(2, 0)"))
        future2.set_result(42)

    resolver = when(waited_by_wait(future2), resolve)
    finished, pending = futures.wait(
        [made.successful, made.cancelled_and_notified, made.exception, future1, future2],
        timeout=HANG, return_when=futures.ALL_COMPLETED)
    resolver.join()
    assert finished == {made.successful, made.cancelled_and_notified, made.exception,
                        future1, future2}
    assert pending == set()


def test_timeout(made, new_future):
    future = new_future()  # never resolved: wait() must time out
    finished, pending = futures.wait(
        [made.cancelled_and_notified, made.exception, made.successful, future],
        timeout=SHORT_TIMEOUT, return_when=futures.ALL_COMPLETED)
    assert finished == {made.cancelled_and_notified, made.exception, made.successful}
    assert pending == {future}


def test_pending_calls_race(new_future):
    # Issue #14406: futures resolved by another thread while wait() installs its
    # waiters, with the switch interval at its smallest.
    fs = {new_future() for _ in range(100)}
    start = threading.Barrier(2)

    def resolve_all():
        start.wait(HANG)
        for f in fs:
            f.set_result(None)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        resolver = when(lambda: True, resolve_all)
        start.wait(HANG)
        done, not_done = futures.wait(fs, timeout=HANG, return_when=futures.ALL_COMPLETED)
    finally:
        sys.setswitchinterval(old)
    resolver.join()
    assert done == fs
    assert not_done == set()


# ================================================================= AsCompletedTests
def test_no_timeout(made, new_future):
    future1 = new_future()
    future2 = new_future()

    def resolve():
        future1.set_result(42)
        future2.set_result(42)

    resolver = when(waited_by_wait(future1), resolve)
    completed = set(futures.as_completed(
        [made.cancelled_and_notified, made.exception, made.successful, future1, future2],
        timeout=HANG))
    resolver.join()
    assert completed == {made.cancelled_and_notified, made.exception, made.successful,
                         future1, future2}


@pytest.mark.parametrize("timeout", [0, SHORT_TIMEOUT])
def test_future_times_out(made, new_future, timeout):
    already_completed = {made.cancelled_and_notified, made.exception, made.successful}
    future = new_future()  # never resolved: as_completed() must time out
    completed_futures = set()
    with pytest.raises(futures.TimeoutError):
        for f in futures.as_completed(already_completed | {future}, timeout):
            completed_futures.add(f)
    assert completed_futures == already_completed


def test_duplicate_futures(new_future):
    # Issue 20367: duplicates neither raise nor are yielded twice.
    # Issue #31641: any iterable is accepted.
    future1 = new_future()
    resolver = when(waited_by_wait(future1), lambda: future1.set_result(None))
    completed = list(futures.as_completed(itertools.repeat(future1, 3), timeout=HANG))
    resolver.join()
    assert completed == [future1]


def test_free_reference_yielded_future(new_future, create_future):
    # Issue #14406: the generator keeps no reference to a future it yielded.
    futures_list = [new_future() for _ in range(8)]
    futures_list.append(create_future(state=CANCELLED_AND_NOTIFIED))
    futures_list.append(create_future(state=FINISHED, result=42))

    with pytest.raises(futures.TimeoutError):
        for future in futures.as_completed(futures_list, timeout=0):
            futures_list.remove(future)
            wr = weakref.ref(future)
            del future
            gc.collect()
            assert wr() is None

    futures_list[0].set_result("test")
    for future in futures.as_completed(futures_list, timeout=HANG):
        futures_list.remove(future)
        wr = weakref.ref(future)
        del future
        gc.collect()
        assert wr() is None
        if futures_list:
            futures_list[0].set_result("test")
    assert futures_list == []


def test_correct_timeout_exception_msg(made):
    futures_list = [made.cancelled_and_notified, made.pending, made.running, made.successful]
    with pytest.raises(futures.TimeoutError) as caught:
        list(futures.as_completed(futures_list, timeout=0))
    assert str(caught.value) == "2 (of 4) futures unfinished"


# ============================================================ beyond CPython's tests
class Falsy(Exception):
    """An exception that is False in a boolean context."""

    def __bool__(self) -> bool:
        return False


def test_falsy_exception_reaches_a_waiter_blocked_in_result(our_future):
    # Future.result() tests `if self._exception:`, so a plain Future hands such an
    # exception's waiters (and, on 3.11, everyone) None; ours must raise it.
    f = our_future()
    error = Falsy("false in a boolean context")
    resolver = when(blocked_on_condition(f), lambda: f.set_exception(error))
    with pytest.raises(Falsy) as caught:
        f.result(timeout=HANG)
    resolver.join()
    assert caught.value is error


def test_falsy_exception_is_raised_by_result_once_settled(our_future):
    f = our_future()
    error = Falsy("false in a boolean context")
    f.set_exception(error)
    with pytest.raises(Falsy) as caught:
        f.result(timeout=0)
    assert caught.value is error
    assert f.exception(timeout=0) is error


SECRET = "hunter2"


def _leaky_callback(cf):
    raise ValueError("password=%s" % SECRET)


def test_raising_callback_is_logged_on_concurrent_futures_without_its_text(our_future,
                                                                            caplog):
    f = our_future()
    after = []
    f.add_done_callback(_leaky_callback)
    f.add_done_callback(lambda cf: after.append(cf.result()))
    with caplog.at_level(logging.DEBUG):
        f.set_result(5)
    assert after == [5]
    assert callback_records(caplog), caplog.records
    assert SECRET not in caplog.text
    assert not any(SECRET in r.getMessage() for r in caplog.records)


def test_raising_callback_added_when_done_is_logged_without_its_text(our_future, caplog):
    f = our_future()
    f.set_result(5)
    with caplog.at_level(logging.DEBUG):
        f.add_done_callback(_leaky_callback)
    assert callback_records(caplog), caplog.records
    assert SECRET not in caplog.text
    assert not any(SECRET in r.getMessage() for r in caplog.records)


# ================================================================ futures of a host
@pytest.fixture
def svc(start_service):
    """A Scripted service: a Hold(gate) payload blocks its handler on the gate.

    It keeps serving after a handler raises (fail_after=None)."""
    plugin = Scripted()
    handle = start_service("svc", plugin, fail_after=None)
    return SimpleNamespace(submit=handle.submit, plugin=plugin)


def held(svc, gates):
    """Submit an event whose handler blocks on a new gate; returns (future, gate)."""
    gate = gates.new()
    return svc.submit(event(Hold(gate))), gate


def test_service_futures_wait_first_completed(svc, gates):
    head, head_gate = held(svc, gates)
    second, second_gate = held(svc, gates)
    resolver = when(waited_by_wait(head), head_gate.set)
    done, not_done = futures.wait([second, head], timeout=HANG,
                                  return_when=futures.FIRST_COMPLETED)
    resolver.join()
    assert done == {head}  # second now blocks on its own gate
    assert not_done == {second}
    second_gate.set()
    assert second.result(timeout=HANG) == "released"


def test_service_futures_wait_first_exception_and_all_completed(svc, gates):
    head, head_gate = held(svc, gates)
    raising = svc.submit(event(ValueError("boom")))
    last, last_gate = held(svc, gates)
    resolver = when(waited_by_wait(head), head_gate.set)
    done, not_done = futures.wait([head, raising, last], timeout=HANG,
                                  return_when=futures.FIRST_EXCEPTION)
    resolver.join()
    assert done == {head, raising}
    assert not_done == {last}
    assert isinstance(raising.exception(timeout=0), errors.DispatchFailed)

    resolver = when(waited_by_wait(last), last_gate.set)
    done, not_done = futures.wait([head, raising, last], timeout=HANG,
                                  return_when=futures.ALL_COMPLETED)
    resolver.join()
    assert (done, not_done) == ({head, raising, last}, set())


def test_service_futures_wait_times_out_on_a_held_event(svc, gates):
    head, head_gate = held(svc, gates)
    finished, pending = futures.wait([head], timeout=SHORT_TIMEOUT)
    assert (finished, pending) == (set(), {head})


def test_service_futures_as_completed_in_completion_order(svc, gates):
    fs = [held(svc, gates) for _ in range(3)]
    [a, b, c] = [f for f, _ in fs]
    it = futures.as_completed([c, b, a, a], timeout=HANG)  # a duplicate is yielded once
    yielded = []
    for future, gate in fs:
        resolver = when(waited_by_wait(future), gate.set)
        yielded.append(next(it))
        resolver.join()
    with pytest.raises(StopIteration):
        next(it)
    assert yielded == [a, b, c]


def test_service_futures_as_completed_times_out(svc, gates):
    head, head_gate = held(svc, gates)
    with pytest.raises(futures.TimeoutError, match=r"1 \(of 1\) futures unfinished"):
        list(futures.as_completed([head], timeout=SHORT_TIMEOUT))


def test_service_future_result_and_exception_with_timeout(svc, gates):
    head, head_gate = held(svc, gates)
    with pytest.raises(futures.TimeoutError):
        head.result(timeout=0)
    with pytest.raises(futures.TimeoutError):
        head.exception(timeout=SHORT_TIMEOUT)
    resolver = when(blocked_on_condition(head), head_gate.set)
    assert head.result(timeout=HANG) == "released"
    resolver.join()
    assert head.exception(timeout=0) is None


def test_service_future_done_callbacks(svc, gates):
    head, head_gate = held(svc, gates)
    calls = []
    head.add_done_callback(lambda f: calls.append((f, f.result(), threading.current_thread())))
    assert calls == []
    head_gate.set()
    assert head.result(timeout=HANG) == "released"
    svc.submit(event("after")).result(timeout=HANG)  # the worker is past head's callbacks
    [(f, value, thread)] = calls
    assert (f, value) == (head, "released")
    assert thread is not threading.current_thread()  # the worker called it
    head.add_done_callback(lambda f: calls.append((f, f.result(), threading.current_thread())))
    assert calls[1] == (head, "released", threading.current_thread())  # at once, here


def test_service_future_cancel_of_a_queued_event(svc, gates):
    head, head_gate = held(svc, gates)
    queued = svc.submit(event("withdrawn"))
    kept = svc.submit(event("kept"))
    called_back = []
    queued.add_done_callback(lambda f: called_back.append(f.cancelled()))
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done() and not queued.running()
    assert called_back == [True]
    with pytest.raises(futures.CancelledError):
        queued.result(timeout=0)
    with pytest.raises(futures.CancelledError):
        queued.exception(timeout=0)
    head_gate.set()
    assert kept.result(timeout=HANG) == "kept"
    assert "withdrawn" not in svc.plugin.payloads  # the handler never saw it
    assert svc.plugin.payloads[1:] == ["kept"]


def test_service_future_cancel_wakes_wait_and_result(svc, gates):
    head, head_gate = held(svc, gates)
    queued = svc.submit(event("withdrawn"))
    resolver = when(waited_by_wait(queued), lambda: queued.cancel())
    done, not_done = futures.wait([queued, head], timeout=HANG,
                                  return_when=futures.FIRST_COMPLETED)
    resolver.join()
    assert (done, not_done) == ({queued}, {head})
    assert list(futures.as_completed([queued], timeout=HANG)) == [queued]

    other = svc.submit(event("withdrawn too"))
    resolver = when(blocked_on_condition(other), other.cancel)
    with pytest.raises(futures.CancelledError):
        other.result(timeout=HANG)
    resolver.join()
    head_gate.set()
    assert head.result(timeout=HANG) == "released"
    assert svc.plugin.payloads[1:] == []


def test_service_future_cancel_of_a_running_event(svc, gates):
    head, head_gate = held(svc, gates)
    assert isinstance(svc.plugin.entered().payload, Hold)  # its handler runs
    assert head.running()
    assert head.cancel() is False
    assert not head.cancelled() and not head.done() and head.running()
    head_gate.set()
    assert head.result(timeout=HANG) == "released"


# ------------------------------------------------------------------ tool futures
class GatedTool:
    """A tool whose request is ``(gate, value)``: it reports the call entered, waits
    for the gate, then returns ``value`` (or raises it, if an exception)."""

    def __init__(self) -> None:
        self.entered: "queue.Queue[Any]" = queue.Queue()
        self.seen: list = []

    def __call__(self, request, ctx):
        gate, value = request
        self.seen.append(value)
        self.entered.put(value)
        gate.wait(HANG)
        if isinstance(value, BaseException):
            raise value
        return value


def _tool_host(gates, workers):
    """A PluginHost with ``workers`` pool threads and the tool "gated"; closed after
    every gate is open."""
    host = PluginHost(tool_workers=workers)
    tool = GatedTool()
    host.add_tool("gated", tool)
    try:
        yield SimpleNamespace(host=host, tool=tool)
    finally:
        gates.open_all()
        host.close(timeout=HANG)


@pytest.fixture
def tools(gates):
    """One pool thread: a second call waits for the first to return."""
    yield from _tool_host(gates, 1)


@pytest.fixture
def tools_wide(gates):
    """Four pool threads, so gated calls run side by side."""
    yield from _tool_host(gates, 4)


def call(tools, gates, value):
    """Submit a call of "gated" that returns (or raises) ``value`` once its new gate
    opens; returns (future, gate)."""
    gate = gates.new()
    return tools.host.submit_tool("gated", (gate, value)), gate


def test_tool_futures_wait_and_as_completed(tools_wide, gates):
    first, first_gate = call(tools_wide, gates, "first")
    failing, failing_gate = call(tools_wide, gates, ValueError("tool broke"))
    last, last_gate = call(tools_wide, gates, "last")

    resolver = when(waited_by_wait(first), first_gate.set)
    done, not_done = futures.wait([first, failing, last], timeout=HANG,
                                  return_when=futures.FIRST_COMPLETED)
    resolver.join()
    assert (done, not_done) == ({first}, {failing, last})

    resolver = when(waited_by_wait(failing), failing_gate.set)
    done, not_done = futures.wait([first, failing, last], timeout=HANG,
                                  return_when=futures.FIRST_EXCEPTION)
    resolver.join()
    assert (done, not_done) == ({first, failing}, {last})
    assert isinstance(failing.exception(timeout=0), errors.ToolFailed)

    finished, pending = futures.wait([last], timeout=SHORT_TIMEOUT)
    assert (finished, pending) == (set(), {last})
    it = futures.as_completed([last, first, last], timeout=HANG)
    assert next(it) is first
    resolver = when(waited_by_wait(last), last_gate.set)
    assert next(it) is last
    resolver.join()
    with pytest.raises(StopIteration):
        next(it)


def test_tool_future_result_with_timeout_and_callbacks(tools, gates):
    running, gate = call(tools, gates, "value")
    calls = []
    running.add_done_callback(lambda f: calls.append(f.result()))
    with pytest.raises(futures.TimeoutError):
        running.result(timeout=SHORT_TIMEOUT)
    resolver = when(blocked_on_condition(running), gate.set)
    assert running.result(timeout=HANG) == "value"
    resolver.join()
    assert running.exception(timeout=0) is None
    assert tools.host.call_tool("gated", (gate, "next")) == "next"  # the pool is past it
    assert calls == ["value"]
    running.add_done_callback(lambda f: calls.append(f.result()))
    assert calls == ["value", "value"]


def test_tool_future_cancel_of_a_running_call_returns_false(tools, gates):
    running, gate = call(tools, gates, "value")
    assert tools.tool.entered.get(timeout=HANG) == "value"  # it runs
    assert running.cancel() is False
    assert not running.cancelled()
    assert running.running()
    gate.set()
    assert running.result(timeout=HANG) == "value"


def test_tool_future_cancel_of_a_call_waiting_for_a_thread(tools, gates):
    head, head_gate = call(tools, gates, "head")
    assert tools.tool.entered.get(timeout=HANG) == "head"  # holds the one thread
    waiting, waiting_gate = call(tools, gates, "withdrawn")
    waiting_gate.set()  # were it run after all, it would not hold the thread
    called_back = []
    waiting.add_done_callback(lambda f: called_back.append(f.cancelled()))
    assert not waiting.running()
    assert waiting.cancel() is True
    assert waiting.cancelled() and waiting.done()
    assert called_back == [True]
    with pytest.raises(futures.CancelledError):
        waiting.result(timeout=0)
    head_gate.set()
    after, after_gate = call(tools, gates, "after")
    after_gate.set()
    assert after.result(timeout=HANG) == "after"  # the pool is past the withdrawn call
    assert tools.tool.seen == ["head", "after"]  # the tool never saw it
