"""Serial dispatch on one worker thread per service, named after the service."""
from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest
from support.doubles import Echo, Factory, Raising, Recorder, event
from support.states import FAILED, RUNNING
from support.timing import HANG

from plugin_service import ServiceConfig, errors

PRODUCERS = 4
PER_PRODUCER = 50


class Overlap(Recorder):
    """Counts handlers running at once (a correct runtime never exceeds one)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        self.threads = set()

    def behave(self, event, ctx):
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        self.threads.add(threading.get_ident())
        try:
            # Give another handler a chance to overlap if the runtime allowed it.
            threading.Event().wait(0)
            return event.payload
        finally:
            with self._lock:
                self.active -= 1


@pytest.fixture
def concurrent_run(start_service, background):
    """PRODUCERS threads, released together, each submitting PER_PRODUCER events."""
    plugin = Overlap()
    handle = start_service("serial", plugin, queue_size=8)
    barrier = threading.Barrier(PRODUCERS)

    def produce(producer):
        barrier.wait(HANG)
        return [handle.submit(event((producer, seq)), block=True, timeout=HANG)
                for seq in range(PER_PRODUCER)]

    producers = [background(produce, n) for n in range(PRODUCERS)]
    batches = [producer.result(timeout=HANG * 4) for producer in producers]
    futures = [future for batch in batches for future in batch]
    results = [future.result(timeout=HANG) for future in futures]
    return handle, plugin, futures, results


def test_concurrent_producers_never_run_two_handlers_at_once(concurrent_run):
    _, plugin, _, _ = concurrent_run
    assert plugin.most_active == 1


def test_concurrent_producers_are_served_by_one_thread(concurrent_run):
    _, plugin, _, _ = concurrent_run
    assert len(plugin.threads) == 1


def test_concurrent_producers_get_their_own_results(concurrent_run):
    _, _, futures, results = concurrent_run
    assert results == [future.event.payload for future in futures]


def test_each_producer_order_is_kept_under_concurrency(concurrent_run):
    _, plugin, _, _ = concurrent_run
    for producer in range(PRODUCERS):
        seqs = [seq for who, seq in plugin.payloads if who == producer]
        assert seqs == list(range(PER_PRODUCER))


def test_every_event_of_concurrent_producers_is_handled_once(concurrent_run):
    handle, plugin, _, _ = concurrent_run
    assert sorted(plugin.payloads) == [(p, s) for p in range(PRODUCERS) for s in range(PER_PRODUCER)]
    assert handle.status().counters.succeeded == PRODUCERS * PER_PRODUCER


def test_events_are_handled_in_submission_order(start_service):
    plugin = Echo()
    handle = start_service("svc", plugin)
    futures = [handle.submit(event(n)) for n in range(20)]
    assert [future.result(timeout=HANG) for future in futures] == list(range(20))
    assert plugin.payloads == list(range(20))


def test_future_is_a_concurrent_future_resolving_to_handler_result(start_service):
    handle = start_service("svc", Echo())
    future = handle.submit(event({"answer": 42}))
    assert isinstance(future, Future)
    assert future.result(timeout=HANG) == {"answer": 42}


def test_every_callback_runs_on_worker_thread_named_after_service(host):
    plugin = Echo()
    handle = host.add_service("billing", plugin)
    handle.start(timeout=HANG)
    handle.submit(event(1)).result(timeout=HANG)
    handle.stop(timeout=HANG)
    assert plugin.calls == [("start", "billing"), ("handle_ingress", "billing"),
                            ("stop", "billing")]


def test_callbacks_never_run_on_the_calling_thread(host):
    plugin = Echo()
    handle = host.add_service("svc", plugin)
    handle.start(timeout=HANG)
    handle.submit(event(1)).result(timeout=HANG)
    handle.stop(timeout=HANG)
    caller = threading.current_thread().name
    assert all(thread != caller for _, thread in plugin.calls)


def test_each_service_gets_its_own_worker_thread(start_service):
    alpha, beta = Echo(), Echo()
    start_service("alpha", alpha).submit(event(1)).result(timeout=HANG)
    start_service("beta", beta).submit(event(2)).result(timeout=HANG)
    assert alpha.calls[-1] == ("handle_ingress", "alpha")
    assert beta.calls[-1] == ("handle_ingress", "beta")


def test_host_adds_one_thread_per_service_plus_a_small_constant(host):
    count = 20
    names = ["threads-%d" % n for n in range(count)]
    before = threading.active_count()
    for name in names:
        host.add_service(name, Echo(), ServiceConfig(dispatch_timeout=1.0))
    host.start_all(timeout=HANG)
    for name in names:  # a dispatch with a timeout arms the watchdog too
        host.submit(name, event(name)).result(timeout=HANG)
    during = threading.active_count()
    alive = {thread.name for thread in threading.enumerate()}
    assert set(names) <= alive
    assert during - before <= count + 2


def test_factory_class_is_built_once_per_start(host):
    built = Factory(Echo)
    handle = host.add_service("svc", built)
    assert built.built == []
    handle.start(timeout=HANG)
    handle.submit(event(1)).result(timeout=HANG)
    handle.submit(event(2)).result(timeout=HANG)
    assert len(built.built) == 1
    assert built.built[0].payloads == [1, 2]


def test_factory_builds_fresh_instance_on_restart(host):
    built = Factory(Echo)
    handle = host.add_service("svc", built)
    handle.start(timeout=HANG)
    handle.submit(event("first life")).result(timeout=HANG)
    handle.stop(timeout=HANG)
    handle.restart(timeout=HANG)
    handle.submit(event("second life")).result(timeout=HANG)
    assert len(built.built) == 2
    assert [p.payloads for p in built.built] == [["first life"], ["second life"]]


def test_factory_builds_fresh_instance_on_restart_after_failure(host):
    built = Factory(Raising)
    handle = host.add_service("svc", built)
    handle.start(timeout=HANG)
    with pytest.raises(errors.DispatchFailed):
        handle.submit(event(1)).result(timeout=HANG)
    assert handle.state is FAILED
    handle.restart(timeout=HANG)
    assert handle.state is RUNNING
    assert len(built.built) == 2
    assert built.built[0] is not built.built[1]


def test_plugin_class_is_accepted_as_factory(host):
    handle = host.add_service("svc", Echo)
    handle.start(timeout=HANG)
    assert handle.submit(event("from class")).result(timeout=HANG) == "from class"

