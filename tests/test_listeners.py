"""Lifecycle listeners: ``host.add_listener`` and ``handle.add_listener`` are told
of every transition, in order, on one thread of the host's, off every lock; a
raising or slow listener costs the others nothing but a bounded backlog."""
from __future__ import annotations

import queue
import threading
import time
from concurrent import futures

import pytest
from loguru import logger
from support.doubles import Echo, FailingStart, Raising, event
from support.listeners import Listener
from support.states import RUNNING, STOPPED, STOPPING
from support.timing import HANG, SHORT, STARTS_WITHIN

from plugin_service import DiagnosticKind, PluginHost, RestartPolicy, ServiceConfig, errors

START = [("svc", "ready", "starting"), ("svc", "starting", "running")]
STOP = [("svc", "running", "stopping"), ("svc", "stopping", "stopped")]
RESTART = [("svc", "stopped", "starting"), ("svc", "starting", "running")]


def moves(name, *pairs):
    return [(name, old, new) for old, new in pairs]


@pytest.fixture
def logged():
    """The messages of the library's WARNING-and-above records during the test."""
    messages = []
    logger.enable("plugin_service")
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING",
                      filter="plugin_service")
    try:
        yield messages
    finally:
        logger.remove(sink)
        logger.disable("plugin_service")


def shrink_backlog(host: PluginHost, size: int) -> None:
    host._listeners._backlog = size  # BACKLOG is 1,000: too many transitions to cause


def overflow_warnings(messages):
    return [m for m in messages if "notifications behind" in m]


# ------------------------------------------------------------------ order
def test_a_host_listener_hears_start_and_stop_in_order(host):
    heard = Listener()
    host.add_listener(heard)
    svc = host.add_service("svc", Echo())
    svc.start(timeout=HANG)
    svc.stop(timeout=HANG)
    assert heard.moves(4) == START + STOP


def test_a_failure_and_its_automatic_restart_are_heard_in_order(host):
    heard = Listener()
    host.add_listener(heard)
    svc = host.add_service("svc", Raising(), ServiceConfig(
        fail_after=1, restart=RestartPolicy(backoff=0.0)))
    svc.start(timeout=HANG)
    assert svc.submit(event(1)).exception(timeout=HANG) is not None
    assert heard.moves(5) == START + moves(
        "svc", ("running", "failed"), ("failed", "starting"), ("starting", "running"))


def test_a_failed_start_is_heard(host):
    heard = Listener()
    host.add_listener(heard)
    svc = host.add_service("svc", FailingStart(RuntimeError("no database")))
    with pytest.raises(errors.ServiceFailed):
        svc.start(timeout=HANG)
    assert heard.moves(2) == moves("svc", ("ready", "starting"), ("starting", "failed"))


def test_every_service_is_heard_in_one_order(host):
    heard = Listener()
    host.add_listener(heard)
    a, b = host.add_service("a", Echo()), host.add_service("b", Echo())
    a.start(timeout=HANG)
    b.start(timeout=HANG)
    a.stop(timeout=HANG)
    b.stop(timeout=HANG)
    up = (("ready", "starting"), ("starting", "running"))
    down = (("running", "stopping"), ("stopping", "stopped"))
    assert heard.moves(8) == (moves("a", *up) + moves("b", *up) + moves("a", *down)
                              + moves("b", *down))


def test_the_diagnostic_is_the_lifecycle_one_recorded_for_the_transition(host):
    heard = Listener()
    svc = host.add_service("svc", Echo())
    svc.add_listener(heard)
    svc.start(timeout=HANG)
    svc.stop(timeout=HANG)
    diagnostics = [told.diagnostic for told in heard.take(4)]
    recorded = svc.status().diagnostics
    assert all(any(d is mine for d in recorded) for mine in diagnostics)
    assert {d.kind for d in diagnostics} == {DiagnosticKind.LIFECYCLE}
    assert [d.message for d in diagnostics] == [
        "ready -> starting", "starting -> running", "running -> stopping",
        "stopping -> stopped"]


def test_host_listeners_are_told_before_the_services_own_each_in_the_order_added(host):
    told = []
    svc = host.add_service("svc", Echo())
    host.add_listener(lambda *_: told.append("host 1"))
    svc.add_listener(lambda *_: told.append("own 1"))
    host.add_listener(lambda *_: told.append("host 2"))
    svc.add_listener(lambda *_: told.append("own 2"))
    last = svc.add_listener(Listener())
    svc.start(timeout=HANG)
    last.take(1)
    assert told[:4] == ["host 1", "host 2", "own 1", "own 2"]


# ------------------------------------------------------- host and handle
def test_a_host_listener_hears_services_added_after_it(host):
    heard = Listener()
    host.add_listener(heard)
    host.add_service("svc", Echo()).start(timeout=HANG)
    assert heard.moves(2) == START


def test_a_handle_listener_hears_only_its_own_service(host):
    heard = Listener()
    a, b = host.add_service("a", Echo()), host.add_service("b", Echo())
    a.add_listener(heard)
    a.start(timeout=HANG)
    b.start(timeout=HANG)
    a.stop(timeout=HANG)
    # b's transitions came before a's stop: told to ``heard``, they would be here.
    assert heard.moves(4) == moves("a", ("ready", "starting"), ("starting", "running"),
                                   ("running", "stopping"), ("stopping", "stopped"))


def test_a_handle_listener_survives_restarts(host):
    heard = Listener()
    svc = host.add_service("svc", Echo)  # a factory: a fresh plugin each life
    svc.add_listener(heard)
    svc.start(timeout=HANG)
    svc.stop(timeout=HANG)
    svc.restart(timeout=HANG)
    assert heard.moves(6) == START + STOP + RESTART


def test_add_listener_returns_the_callback_so_it_serves_as_a_decorator(host):
    svc = host.add_service("svc", Echo())
    heard = Listener()
    assert host.add_listener(heard) is heard
    assert svc.add_listener(heard) is heard


def test_add_listener_refuses_what_is_not_callable(host):
    with pytest.raises(TypeError):
        host.add_listener("not a function")
    with pytest.raises(TypeError):
        host.add_service("svc", Echo()).add_listener(None)


def test_add_listener_after_close_raises_host_closed(make_host):
    host = make_host()
    svc = host.add_service("svc", Echo())
    host.close(timeout=HANG)
    with pytest.raises(errors.HostClosed):
        host.add_listener(Listener())
    with pytest.raises(errors.HostClosed):
        svc.add_listener(Listener())


# ------------------------------------------------------------------ removal
def test_a_removed_host_listener_hears_no_more(host):
    removed, kept = Listener(), Listener()
    host.add_listener(removed)
    host.add_listener(kept)
    svc = host.add_service("svc", Echo())
    svc.start(timeout=HANG)
    assert removed.moves(2) == kept.moves(2) == START
    host.remove_listener(removed)
    svc.stop(timeout=HANG)
    assert kept.moves(2) == STOP  # told after ``removed``'s turn for the same transitions
    assert removed.rest() == []


def test_a_removed_handle_listener_hears_no_more(host):
    removed, kept = Listener(), Listener()
    svc = host.add_service("svc", Echo())
    svc.add_listener(removed)
    svc.add_listener(kept)
    svc.start(timeout=HANG)
    assert removed.moves(2) == kept.moves(2) == START
    svc.remove_listener(removed)
    svc.stop(timeout=HANG)
    assert kept.moves(2) == STOP
    assert removed.rest() == []


def test_a_listener_removed_while_its_notifications_wait_is_not_told_them(host, gates):
    slow, removed = Listener(hold=gates.new()), Listener()
    host.add_listener(slow)
    host.add_listener(removed)
    svc = host.add_service("svc", Echo())
    svc.start(timeout=HANG)
    assert slow.entered.wait(HANG)  # in the first notification, before ``removed``'s turn
    host.remove_listener(removed)
    slow.hold.set()
    svc.stop(timeout=HANG)
    assert slow.moves(4) == START + STOP
    assert removed.rest() == []


def test_a_listener_may_remove_itself(host):
    calls = []

    def once(name, from_state, to_state, diagnostic):
        calls.append(to_state)
        host.remove_listener(once)

    later = Listener()
    host.add_listener(once)
    host.add_listener(later)
    host.add_service("svc", Echo()).start(timeout=HANG)
    assert later.moves(2) == START
    assert calls == ["starting"]


def test_removing_an_unknown_listener_raises_value_error(host):
    svc = host.add_service("svc", Echo())
    on_service = svc.add_listener(Listener())
    with pytest.raises(ValueError):
        host.remove_listener(Listener())
    with pytest.raises(ValueError):
        host.remove_listener(on_service)  # registered on the service, not the host
    with pytest.raises(ValueError):
        svc.remove_listener(Listener())


# ------------------------------------------------------ threads and locks
def test_listeners_run_on_one_thread_of_the_hosts_not_the_worker_nor_the_caller(host):
    heard = Listener()
    host.add_listener(heard)
    plugin = Echo()
    svc = host.add_service("svc", plugin)
    svc.start(timeout=HANG)
    svc.stop(timeout=HANG)
    threads = {told.thread for told in heard.take(4)}
    assert len(threads) == 1
    (thread,) = threads
    assert thread.name.startswith("plugin_service-listeners-")
    assert thread is not threading.current_thread()
    assert thread.name not in {name for _call, name in plugin.calls}  # the worker's


def test_a_host_without_listeners_starts_no_listener_thread(host):
    def listener_threads():
        return {t for t in threading.enumerate()
                if t.name.startswith("plugin_service-listeners-")}

    before = listener_threads()
    svc = host.add_service("svc", Echo())
    svc.start(timeout=HANG)
    svc.stop(timeout=HANG)
    assert listener_threads() - before == set()


def test_a_listener_may_call_the_status_and_stop_of_the_service_it_hears(host):
    seen: "queue.Queue[tuple]" = queue.Queue()

    def stop_once_running(name, from_state, to_state, diagnostic):
        handle = host.service(name)
        state = handle.status().state  # takes the service's lock: never held here
        if to_state is RUNNING:
            seen.put((state, handle.stop(timeout=HANG).state))

    svc = host.add_service("svc", Raising(), ServiceConfig(
        fail_after=1, restart=RestartPolicy(backoff=0.0)))
    svc.start(timeout=HANG)
    svc.add_listener(stop_once_running)
    # Failed and restarted by the host, no caller waiting for it to be RUNNING.
    assert svc.submit(event(1)).exception(timeout=HANG) is not None
    assert seen.get(timeout=HANG) == (RUNNING, STOPPED)


def test_a_listener_may_close_the_host(make_host):
    host = make_host()
    closed = threading.Event()
    heard = Listener()

    def close_once_stopping(name, from_state, to_state, diagnostic):
        if to_state is STOPPING:
            host.close(timeout=HANG)  # does not wait for the thread it runs on
            closed.set()

    svc = host.add_service("svc", Echo())
    svc.start(timeout=HANG)
    host.add_listener(close_once_stopping)
    host.add_listener(heard)
    assert svc.stop(timeout=HANG).state is STOPPED
    assert closed.wait(HANG)
    assert heard.moves(2) == STOP  # posted before close() returned, told after


# --------------------------------------------------- raising and slow ones
def test_a_raising_listener_is_logged_redacted_and_the_others_still_hear(host, logged):
    def raising(name, from_state, to_state, diagnostic):
        raise RuntimeError("cannot reach the database: password=hunter2")

    heard = Listener()
    host.add_listener(raising)
    host.add_listener(heard)
    host.add_service("svc", Echo()).start(timeout=HANG)
    assert heard.moves(2) == START  # each told after ``raising`` failed and was logged
    failures = [m for m in logged if m.startswith("lifecycle listener")]
    assert len(failures) == 2
    assert all("RuntimeError" in m and "'svc'" in m for m in failures), failures
    assert not any("hunter2" in m for m in failures), failures


def test_a_slow_listener_holds_up_neither_dispatch_nor_lifecycle_calls(host, gates):
    slow = Listener(hold=gates.new())
    host.add_listener(slow)
    a, b = host.add_service("a", Echo()), host.add_service("b", Echo())
    a.start(timeout=HANG)
    assert slow.entered.wait(HANG)
    assert b.start(timeout=HANG).state is RUNNING
    assert [a.submit(event(n)).result(timeout=HANG) for n in range(5)] == list(range(5))
    assert [b.submit(event(n)).result(timeout=HANG) for n in range(5)] == list(range(5))
    assert a.stop(timeout=HANG).state is STOPPED
    assert not slow.hold.is_set()  # all the above while the listener was held
    slow.hold.set()
    up = (("ready", "starting"), ("starting", "running"))
    assert slow.moves(6) == (moves("a", *up) + moves("b", *up)
                             + moves("a", ("running", "stopping"), ("stopping", "stopped")))


def test_past_the_backlog_the_newest_notifications_are_dropped_and_counted(
        host, gates, logged):
    shrink_backlog(host, 2)
    slow = Listener(hold=gates.new())
    host.add_listener(slow)
    svc = host.add_service("svc", Echo())
    svc.start(timeout=HANG)
    assert slow.entered.wait(HANG)  # held in "ready -> starting"; "starting -> running" waits
    svc.stop(timeout=HANG)  # "running -> stopping" fills the backlog; the next is dropped
    svc.restart(timeout=HANG)  # both dropped
    assert host.status().listener_backlog_dropped == 3
    assert host.status().to_dict()["listener_backlog_dropped"] == 3
    assert len(overflow_warnings(logged)) == 1
    slow.hold.set()
    assert slow.moves(3) == START + STOP[:1]
    host.close(timeout=HANG)  # caught up: close()'s own stop is told again
    assert slow.rest() == STOP


def test_an_overflow_warns_once_until_the_listeners_catch_up(host, gates, logged):
    shrink_backlog(host, 2)
    first = Listener(hold=gates.new())
    host.add_listener(first)
    svc = host.add_service("svc", Echo())
    svc.start(timeout=HANG)
    assert first.entered.wait(HANG)
    svc.stop(timeout=HANG)  # "stopping -> stopped" dropped: one warning
    svc.restart(timeout=HANG)  # both dropped: no more warnings
    assert len(overflow_warnings(logged)) == 1
    first.hold.set()
    assert first.moves(3) == START + STOP[:1]  # caught up
    svc.stop(timeout=HANG)
    assert first.moves(2) == STOP
    second = Listener(hold=gates.new())
    host.add_listener(second)
    svc.restart(timeout=HANG)
    assert second.entered.wait(HANG)  # held in "stopped -> starting"
    svc.stop(timeout=HANG)  # "stopping -> stopped" dropped: a second warning
    assert len(overflow_warnings(logged)) == 2
    assert host.status().listener_backlog_dropped == 4


# ------------------------------------------------------------------ close
def test_close_delivers_pending_notifications_and_joins_the_listener_thread(
        make_host, gates, background):
    host = make_host()
    slow = Listener(hold=gates.new())
    host.add_listener(slow)
    svc = host.add_service("svc", Echo())
    svc.start(timeout=HANG)
    assert slow.entered.wait(HANG)
    closing = background(host.close, HANG)
    assert svc.wait_for(STOPPED, HANG)
    # Everything else of close() is done in far less; it waits for the held
    # listener (within its bound of HANG).
    assert not futures.wait([closing], timeout=STARTS_WITHIN).done
    slow.hold.set()
    closing.result(timeout=HANG)
    told = slow.take(4, timeout=0)  # all there once close() has returned
    assert [one.move for one in told] == START + STOP
    assert not told[0].thread.is_alive()


def test_close_waits_no_longer_than_its_timeout_for_a_stuck_listener(make_host, gates):
    host = make_host()
    stuck = Listener(hold=gates.new())
    host.add_listener(stuck)
    host.add_service("svc", Echo()).start(timeout=HANG)
    assert stuck.entered.wait(HANG)
    began = time.monotonic()
    host.close(timeout=SHORT)
    assert time.monotonic() - began < HANG  # the listener is held for far longer
    assert not stuck.hold.is_set()
