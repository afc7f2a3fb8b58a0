"""Replacing a service's plugin without losing its queue (issue 16, section 2).

The old plugin's ``stop()`` waits on a gate in most tests: while it waits the
hand-over is under way (old plugin stopping, new one not started), which is the
window the contract says stays open to submits.
"""
from __future__ import annotations

import threading
from typing import Any, List, Tuple

import pytest
from support.checks import assert_invariants
from support.doubles import INGRESS, event
from support.timing import HANG, SHORT

from plugin_service import (
    Ingress,
    LifecycleState,
    RestartPolicy,
    ServiceConfig,
    ServicePlugin,
    errors,
)


class Journal:
    """Who handled what, in the order it was handled: ``(tag, payload)``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handled: List[Tuple[str, Any]] = []

    def add(self, tag: str, payload: Any) -> None:
        with self.lock:
            self.handled.append((tag, payload))


class Tagged(ServicePlugin):
    """Answers ``(tag, payload)``, journaled; ``stop()`` may wait on a gate."""

    ingresses = [Ingress(INGRESS)]

    def __init__(self, tag: str, journal: Journal, stop_gate: Any = None) -> None:
        self.tag = tag
        self.journal = journal
        self.stop_gate = stop_gate
        self.stopping = threading.Event()
        self.starts = 0

    def start(self) -> None:
        self.starts += 1

    def handle_ingress(self, event: Any, ctx: Any) -> Any:
        self.journal.add(self.tag, event.payload)
        return self.tag, event.payload

    def stop(self) -> None:
        self.stopping.set()
        if self.stop_gate is not None:
            self.stop_gate.wait(HANG)


class FailingStart(Tagged):
    def start(self) -> None:
        raise RuntimeError("new plugin cannot start")


class WaitsForCancel(Tagged):
    """Holds the first event until its context is cancelled."""

    def __init__(self, tag: str, journal: Journal) -> None:
        super().__init__(tag, journal)
        self.entered = threading.Event()

    def handle_ingress(self, event: Any, ctx: Any) -> Any:
        if event.payload == 0:
            self.journal.add(self.tag, event.payload)
            self.entered.set()
            return self.tag, ctx.wait(HANG)
        return super().handle_ingress(event, ctx)


class IgnoresCancel(Tagged):
    """Holds the first event on a gate, whatever its context says."""

    def __init__(self, tag: str, journal: Journal, gate: threading.Event) -> None:
        super().__init__(tag, journal)
        self.gate = gate
        self.entered = threading.Event()

    def handle_ingress(self, event: Any, ctx: Any) -> Any:
        if event.payload == 0:
            self.entered.set()
            self.gate.wait(HANG)
        return super().handle_ingress(event, ctx)


def results(futures: List[Any]) -> List[Any]:
    return [future.result(timeout=HANG) for future in futures]


def test_a_steady_stream_from_several_threads_is_never_refused_and_handled_once_in_order(
        host, gates, background):
    journal = Journal()
    release_old, release_new = gates.new(), gates.new()

    class New(Tagged):
        def start(self) -> None:
            release_new.wait(HANG)  # the new start() still runs: the swap is under way

    old = Tagged("old", journal, stop_gate=release_old)
    handle = host.add_service("svc", old, ServiceConfig(queue_size=1000))
    handle.start(timeout=HANG)
    submitters, per_phase = 4, 40
    phase = threading.Barrier(submitters + 1, timeout=HANG)
    futures: List[List[Any]] = [[] for _ in range(submitters)]

    def submit(who: int) -> None:
        for step in range(4):  # before, old stopping, new starting, after
            phase.wait()
            for n in range(per_phase):
                futures[who].append(handle.submit(event((who, step * per_phase + n))))
            phase.wait()

    running = [background(submit, who) for who in range(submitters)]
    phase.wait()
    phase.wait()  # phase 1 submitted
    futures[0][0].result(timeout=HANG)  # the old plugin has handled one at least
    replaced = background(host.replace_service, "svc", New("new", journal), timeout=HANG)
    assert old.stopping.wait(HANG)
    phase.wait()
    phase.wait()  # phase 2 submitted while the old plugin stops
    release_old.set()
    phase.wait()
    phase.wait()  # phase 3 submitted, mostly while the new start() runs
    release_new.set()
    assert replaced.result(timeout=HANG).replacements == 1
    phase.wait()
    phase.wait()  # phase 4 submitted after the replacement
    for done in running:
        done.result(timeout=HANG)  # no submit raised
    for who in range(submitters):
        assert [value[1] for value in results(futures[who])] == [
            (who, n) for n in range(4 * per_phase)]
    handled = journal.handled
    assert sorted(payload for _tag, payload in handled) == sorted(
        (who, n) for who in range(submitters) for n in range(4 * per_phase))
    tags = [tag for tag, _payload in handled]
    cut = tags.index("new")
    assert 0 < cut <= submitters * per_phase  # old handled a prefix of phase 1 only
    assert tags == ["old"] * cut + ["new"] * (len(tags) - cut)
    for who in range(submitters):
        mine = [payload[1] for _tag, payload in handled if payload[0] == who]
        assert mine == sorted(mine)
    status = handle.status()
    assert status.counters.rejected == 0 and status.counters.succeeded == len(handled)
    assert_invariants(status)


def test_the_event_in_flight_finishes_on_the_old_plugin_the_queued_ones_on_the_new(host):
    journal = Journal()
    old = WaitsForCancel("old", journal)
    handle = host.add_service("svc", old)
    handle.start(timeout=HANG)
    first = handle.submit(event(0))
    queued = [handle.submit(event(n)) for n in (1, 2)]
    assert old.entered.wait(HANG)
    # The bound runs out while 0 is in flight: it is cancelled, and returns.
    host.replace_service("svc", Tagged("new", journal), timeout=SHORT)
    assert first.result(timeout=HANG) == ("old", True)
    assert results(queued) == [("new", 1), ("new", 2)]
    assert journal.handled == [("old", 0), ("new", 1), ("new", 2)]


def test_counters_continue_and_status_counts_replacements(start_service, host):
    journal = Journal()
    handle = start_service("svc", Tagged("old", journal))
    results([handle.submit(event(n)) for n in range(3)])
    host.replace_service("svc", Tagged("new", journal))
    status = host.replace_service("svc", Tagged("newer", journal))
    assert results([handle.submit(event(n)) for n in range(2)]) == [("newer", 0), ("newer", 1)]
    status = handle.status()
    assert status.replacements == 2 and status.restarts == 0
    assert status.counters.enqueued == 5 and status.counters.succeeded == 5
    assert status.state is LifecycleState.RUNNING
    assert_invariants(status)


def swap_with_queued(host: Any, gates: Any, background: Any, journal: Journal, new: Any,
                     config: Any = None) -> Tuple[Any, List[Any], Any]:
    """Start "svc" on an old plugin, replace it by ``new`` and, while the old one
    stops, queue events 1 and 2; then let it go. ``(handle, queued, replaced)``."""
    release_old = gates.new()
    old = Tagged("old", journal, stop_gate=release_old)
    handle = host.add_service("svc", old, config)
    handle.start(timeout=HANG)
    replaced = background(host.replace_service, "svc", new)
    assert old.stopping.wait(HANG)
    queued = [handle.submit(event(n)) for n in (1, 2)]  # accepted during the swap
    release_old.set()
    return handle, queued, replaced


def test_a_failing_new_start_fails_the_service_keeping_its_queue(host, gates, background):
    journal = Journal()
    handle, queued, replaced = swap_with_queued(host, gates, background, journal,
                                                FailingStart("bad", journal))
    with pytest.raises(errors.ServiceFailed, match="queue is kept"):
        replaced.result(timeout=HANG)
    status = handle.status()
    assert status.state is LifecycleState.FAILED and status.queue_depth == 2
    assert not any(future.done() for future in queued)
    assert "new plugin cannot start" in status.failure.message
    assert_invariants(status)


def test_a_second_replacement_recovers_the_kept_queue(host, gates, background):
    journal = Journal()
    _handle, queued, replaced = swap_with_queued(host, gates, background, journal,
                                                 FailingStart("bad", journal))
    with pytest.raises(errors.ServiceFailed):
        replaced.result(timeout=HANG)
    status = host.replace_service("svc", Tagged("fixed", journal))
    assert status.state is LifecycleState.RUNNING and status.replacements == 2
    assert results(queued) == [("fixed", 1), ("fixed", 2)]


def test_the_old_plugin_is_not_restored_a_restart_starts_the_new_one(host, gates, background):
    journal = Journal()
    release_old = gates.new()
    old = Tagged("old", journal, stop_gate=release_old)
    handle = host.add_service("svc", old)
    handle.start(timeout=HANG)
    release_old.set()
    with pytest.raises(errors.ServiceFailed):
        host.replace_service("svc", FailingStart("bad", journal))
    with pytest.raises(errors.ServiceFailed, match="new plugin cannot start"):
        handle.restart(timeout=HANG)
    assert old.starts == 1


def test_a_restart_policy_restarts_the_new_plugin_with_the_kept_queue(host, gates, background):
    journal = Journal()

    class FailsOnce(Tagged):
        made = 0

        def __init__(self) -> None:
            super().__init__("new", journal)

        def start(self) -> None:
            type(self).made += 1
            if type(self).made == 1:
                raise RuntimeError("first start fails")

    handle, queued, replaced = swap_with_queued(
        host, gates, background, journal, FailsOnce,
        ServiceConfig(restart=RestartPolicy(max_restarts=3, backoff=0.0)))
    with pytest.raises(errors.ServiceFailed):
        replaced.result(timeout=HANG)
    assert results(queued) == [("new", 1), ("new", 2)]  # by the restarted new plugin
    status = handle.status()
    assert status.state is LifecycleState.RUNNING
    assert status.restarts == 1 and status.replacements == 1 and FailsOnce.made == 2


def test_an_old_handler_ignoring_the_bound_and_grace_times_out_and_fails_keeping_the_queue(
        host, gates):
    journal = Journal()
    gate = gates.new()
    old = IgnoresCancel("old", journal, gate)
    handle = host.add_service("svc", old, ServiceConfig(cancel_grace=SHORT))
    handle.start(timeout=HANG)
    first = handle.submit(event(0))
    assert old.entered.wait(HANG)
    queued = handle.submit(event(1))

    class New(Tagged):
        def __init__(self) -> None:
            super().__init__("new", journal)

    with pytest.raises(errors.ServiceFailed, match="did not let go"):
        host.replace_service("svc", New, timeout=SHORT)
    assert isinstance(first.exception(timeout=HANG), errors.DispatchTimeout)
    assert handle.status().queue_depth == 1
    handle.restart(timeout=HANG)  # the new plugin, while the old thread is still stuck
    assert queued.result(timeout=HANG) == ("new", 1)


def test_a_stop_before_the_old_plugin_let_go_wins_and_the_old_plugin_drains(
        host, gates, background):
    journal = Journal()
    gate = gates.new()
    old = IgnoresCancel("old", journal, gate)
    handle = host.add_service("svc", old)
    handle.start(timeout=HANG)
    futures = [handle.submit(event(n)) for n in (0, 1)]
    assert old.entered.wait(HANG)
    replaced = background(host.replace_service, "svc", Tagged("new", journal))
    stopped = background(handle.stop, timeout=HANG)
    assert handle.wait_for(LifecycleState.STOPPING, HANG)
    gate.set()
    assert stopped.result(timeout=HANG).state is LifecycleState.STOPPED
    # Whichever came first: the stop wins, the replacement is refused or called off.
    with pytest.raises((errors.ServiceStopped, errors.LifecycleError)):
        replaced.result(timeout=HANG)
    assert results(futures) == [("old", 0), ("old", 1)]
    assert handle.status().replacements == 0


def test_a_stop_during_the_hand_over_drains_through_the_new_plugin(host, gates, background):
    journal = Journal()
    release_old = gates.new()
    old = Tagged("old", journal, stop_gate=release_old)
    handle = host.add_service("svc", old)
    handle.start(timeout=HANG)
    replaced = background(host.replace_service, "svc", Tagged("new", journal))
    assert old.stopping.wait(HANG)
    queued = handle.submit(event(1))
    stopped = background(handle.stop, timeout=HANG)
    assert handle.wait_for(LifecycleState.STOPPING, HANG)
    release_old.set()
    assert stopped.result(timeout=HANG).state is LifecycleState.STOPPED
    assert replaced.result(timeout=HANG).replacements == 1
    assert queued.result(timeout=HANG) == ("new", 1)


def test_a_stopped_service_keeps_the_new_plugin_for_its_next_start(start_service, host):
    journal = Journal()
    handle = start_service("svc", Tagged("old", journal))
    handle.stop(timeout=HANG)
    status = host.replace_service("svc", Tagged("new", journal))
    assert status.state is LifecycleState.STOPPED and status.replacements == 1
    handle.restart(timeout=HANG)
    assert handle.submit(event(1)).result(timeout=HANG) == ("new", 1)


def test_a_replacement_from_the_services_own_callback_is_refused(start_service, host):
    journal = Journal()

    class SelfReplacing(Tagged):
        def handle_ingress(self, event: Any, ctx: Any) -> Any:
            host.replace_service("svc", Tagged("new", journal))

    handle = start_service("svc", SelfReplacing("old", journal))
    error = handle.submit(event(1)).exception(timeout=HANG)
    assert isinstance(error.__cause__, errors.LifecycleError)


def test_replacing_an_unknown_service_raises_service_not_found(host):
    with pytest.raises(errors.ServiceNotFound):
        host.replace_service("nope", Tagged("new", Journal()))


def _settled_with(futures: List[Any]) -> List[type]:
    """The error type each future ended with (each must end, within HANG)."""
    return [type(future.exception(timeout=HANG)) for future in futures]


def test_a_close_whose_bound_ends_during_the_hand_over_answers_every_queued_event(
        host, gates, background):
    journal = Journal()
    old = Tagged("old", journal, stop_gate=gates.new())  # lets go only at teardown
    handle = host.add_service("svc", old)
    handle.start(timeout=HANG)
    replaced = background(host.replace_service, "svc", Tagged("new", journal))
    assert old.stopping.wait(HANG)
    queued = [handle.submit(event(n)) for n in range(3)]
    host.close(timeout=0.5)  # ends while the old plugin holds on: any bound does
    # Nothing is kept for a plugin that will never run: each event has its outcome.
    assert set(_settled_with(queued)) <= {errors.ServiceFailed, errors.ServiceStopped}
    with pytest.raises(errors.PluginServiceError):
        replaced.result(timeout=HANG)
    assert_invariants(handle.status())


def test_a_stop_during_a_replacement_that_fails_answers_every_queued_event(
        host, gates, background):
    journal = Journal()
    old = Tagged("old", journal, stop_gate=gates.new())  # lets go only at teardown
    handle = host.add_service("svc", old, ServiceConfig(cancel_grace=SHORT))
    handle.start(timeout=HANG)
    replaced = background(host.replace_service, "svc", Tagged("new", journal),
                          timeout=SHORT)
    assert old.stopping.wait(HANG)
    queued = [handle.submit(event(n)) for n in range(3)]
    stopped = background(handle.stop, timeout=HANG)
    assert handle.wait_for(LifecycleState.STOPPING, HANG)
    with pytest.raises(errors.ServiceFailed):
        replaced.result(timeout=HANG)  # the old plugin did not let go in time
    assert set(_settled_with(queued)) <= {errors.ServiceFailed, errors.ServiceStopped}
    stopped.exception(timeout=HANG)  # the stop ends too (its report: the failure)
    assert handle.status().queue_depth == 0
    assert_invariants(handle.status())


def test_a_bad_timeout_is_refused_before_anything_is_replaced(start_service, host):
    journal = Journal()
    handle = start_service("svc", Tagged("old", journal))
    with pytest.raises(ValueError, match="timeout"):
        host.replace_service("svc", Tagged("new", journal), timeout="5")
    assert handle.submit(event(1)).result(timeout=HANG) == ("old", 1)
    assert handle.status().replacements == 0
