"""Hostile plugins never stall the host (issue 20) and failed plugins are cleaned
up (issue 12, item 5).

Whatever a plugin controls (its exception, its event, its status) may raise,
lie or block: the runtime computes what it needs of it outside every lock, and
every accepted event's future is resolved whatever it meets.
"""
from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List

import pytest
from support.checks import assert_invariants
from support.doubles import INGRESS, Blocking, Factory, Recorder, event
from support.states import FAILED, RUNNING, STOPPED
from support.timing import HANG

from plugin_service import (
    DiagnosticKind,
    Ingress,
    IngressEvent,
    PluginHost,
    RestartPolicy,
    RetryPolicy,
    ServiceConfig,
    ServicePlugin,
    errors,
)

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------ hostile exceptions
class RaisingStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ refuses")


class BaseRaisingStr(Exception):
    def __str__(self) -> str:
        raise KeyboardInterrupt  # even a BaseException from __str__


class NonStrStr(Exception):
    def __str__(self) -> Any:
        return 42


class LyingClass(Exception):
    """Its ``__class__`` is a property that raises: isinstance() runs it."""

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        raise RuntimeError("__class__ lies")


class LyingArgs(Exception):
    @property
    def args(self) -> Any:  # type: ignore[override]
        raise RuntimeError("args lie")

    def __str__(self) -> str:
        return str(self.args)


HOSTILE = [RaisingStr, BaseRaisingStr, NonStrStr, LyingClass, LyingArgs]


class RaiseGiven(Recorder):
    """Raises the payload when it is an exception, else echoes it."""

    def behave(self, event: IngressEvent, ctx: Any) -> Any:
        if isinstance(event.payload, BaseException):
            raise event.payload
        return event.payload


@pytest.mark.parametrize("error_type", HOSTILE, ids=lambda t: t.__name__)
def test_hostile_handler_exception_resolves_its_future_and_the_service_serves_on(
        start_service, error_type):
    svc = start_service("svc", RaiseGiven(), fail_after=None)
    failed = svc.submit(event(error_type()))
    error = failed.exception(timeout=HANG)
    assert isinstance(error, errors.DispatchFailed)
    assert type(error.__cause__) is error_type
    assert svc.submit(event("next")).result(timeout=HANG) == "next"
    status = svc.status()
    assert status.state is RUNNING  # fail_after=None: no "worker crashed"
    assert (status.counters.failed, status.counters.succeeded) == (1, 1)
    assert status.last_error.kind is DiagnosticKind.DISPATCH_FAILED
    assert error_type.__name__ in status.last_error.message
    assert_invariants(status)


@pytest.mark.parametrize("error_type", HOSTILE, ids=lambda t: t.__name__)
def test_hostile_exception_under_a_retry_policy_still_ends_in_one_outcome(
        start_service, error_type):
    svc = start_service("svc", RaiseGiven(), fail_after=None,
                        retry=RetryPolicy(max_attempts=2, backoff=0.0))
    assert isinstance(svc.submit(event(error_type())).exception(timeout=HANG),
                      errors.DispatchFailed)
    assert svc.status().counters.failed == 1
    assert_invariants(svc.status())


class SlowStr(Exception):
    """An exception whose ``__str__`` blocks until ``gate`` opens."""

    def __init__(self, gate: threading.Event, entered: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.entered = entered

    def __str__(self) -> str:
        self.entered.set()
        self.gate.wait()
        return "slow"


class WaitsForCancel(Recorder):
    def behave(self, event: IngressEvent, ctx: Any) -> Any:
        ctx.wait()
        return "cancelled"


def test_slow_exception_str_does_not_stall_other_services_timeouts(host, start_service,
                                                                    gates):
    # The slow __str__ runs on svc's worker while svc's own dispatch timer fires:
    # were it under svc's lock, the one watchdog would wait on that lock and the
    # other service's timeout would stall until the gate opens.
    slow = start_service("slow", RaiseGiven(), dispatch_timeout=0.2, fail_after=None)
    other = start_service("other", WaitsForCancel(), dispatch_timeout=0.4)
    gate, entered = gates.new(), threading.Event()
    slow_future = slow.submit(event(SlowStr(gate, entered)))
    assert entered.wait(HANG)
    timed = other.submit(event("x"))
    assert isinstance(timed.exception(timeout=HANG), errors.DispatchTimeout)
    assert not gate.is_set()  # decided while the slow __str__ was still running
    assert not slow_future.done() or isinstance(slow_future.exception(0),
                                                errors.DispatchTimeout)
    gate.set()
    assert isinstance(slow_future.exception(timeout=HANG), errors.DispatchError)
    assert_invariants(slow.status())


# --------------------------------------------------------- lying events
class LyingEvent(IngressEvent):
    """Its ``correlation_id`` is valid while ``honest`` and raises afterwards."""

    honest = True

    @property  # type: ignore[misc]
    def correlation_id(self) -> Any:
        if LyingEvent.honest:
            return "cid-lying"
        raise RuntimeError("correlation_id lies now")


@pytest.fixture
def lying():
    LyingEvent.honest = True
    yield LyingEvent
    LyingEvent.honest = True


def test_stop_without_drain_resolves_every_queued_future_whatever_the_events_say(
        start_service, gates, lying):
    gate = gates.new()
    plugin = Blocking(gate)
    svc = start_service("svc", plugin, dispatch_timeout=None)
    head = svc.submit(event("head"))
    plugin.entered()
    queued = [svc.submit(lying(INGRESS, "test", n)) for n in range(3)]
    queued.append(svc.submit(event("plain")))
    lying.honest = False
    stopping = ThreadPoolExecutor(1).submit(svc.stop, drain=False, timeout=HANG)
    for future in queued:
        assert isinstance(future.exception(timeout=HANG), errors.ServiceStopped)
    gate.set()
    assert head.result(timeout=HANG) == "head"
    assert stopping.result(timeout=HANG).state is STOPPED
    status = svc.status()
    assert status.counters.dropped == 4
    assert_invariants(status)


def test_timeout_of_a_lying_event_is_recorded_with_the_id_it_had_at_submit(
        start_service, lying):
    svc = start_service("svc", WaitsForCancel(), dispatch_timeout=0.2, fail_after=None)
    future = svc.submit(lying(INGRESS, "test", "x"))
    lying.honest = False
    assert isinstance(future.exception(timeout=HANG), errors.DispatchTimeout)
    assert svc.status().last_error.correlation_id == "cid-lying"


# ------------------------------------------------------- blocking status()
class BlockingStatus(Recorder):
    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.status_calls = 0

    def status(self) -> Any:
        self.status_calls += 1
        self.gate.wait()
        return {"late": True}


def test_a_blocking_plugin_status_is_bounded_everywhere_a_status_is_returned(host, gates):
    gate = gates.new()
    plugin = BlockingStatus(gate)
    svc = host.add_service("svc", plugin)
    other = host.add_service("other", BlockingStatus(gate))
    assert svc.start(timeout=HANG).plugin_status is None
    other.start(timeout=HANG)
    status = host.status()  # both plugins block: one shared bound, then None
    assert status.services["svc"].plugin_status is None
    assert status.services["other"].plugin_status is None
    assert svc.start().state is RUNNING  # start() of a RUNNING service
    assert svc.stop(timeout=HANG).state is STOPPED
    assert svc.stop().state is STOPPED  # stop() of a STOPPED one
    assert svc.restart(timeout=HANG).state is RUNNING
    # One call at a time: while the first is stuck, the next are answered None at once.
    assert plugin.status_calls == 1
    gate.set()


def test_plugin_status_answering_in_time_is_reported(host):
    class Quick(Recorder):
        def status(self) -> Any:
            return {"ok": 1}

    svc = host.add_service("svc", Quick())
    svc.start(timeout=HANG)
    assert svc.status().plugin_status == {"ok": 1}
    assert host.status().services["svc"].plugin_status == {"ok": 1}


# ------------------------------------------------------------- cancel races
def test_two_cancels_racing_on_one_queued_event_both_answer_true(start_service, gates):
    gate = gates.new()
    plugin = Blocking(gate)
    svc = start_service("svc", plugin, queue_size=4, dispatch_timeout=None)
    head = svc.submit(event("head"))
    plugin.entered()
    barrier = threading.Barrier(2)

    def cancel(future: Any) -> bool:
        barrier.wait()
        return bool(future.cancel())

    disagreed = 0
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: widen any gap
    try:
        with ThreadPoolExecutor(2) as pool:
            for _ in range(3000):
                future = svc.submit(event("victim"))
                answers = [pool.submit(cancel, future), pool.submit(cancel, future)]
                if [a.result(timeout=HANG) for a in answers] != [True, True]:
                    disagreed += 1
                barrier.reset()
    finally:
        sys.setswitchinterval(switch)
    assert disagreed == 0
    gate.set()
    assert head.result(timeout=HANG) == "head"
    assert svc.status().counters.dropped == 3000
    assert plugin.payloads == ["head"]


# ----------------------------------------------------------- closed is closed
class FailsOnEvent(Recorder):
    def behave(self, event: IngressEvent, ctx: Any) -> Any:
        raise ValueError("fail")


def test_every_lifecycle_call_after_close_raises_host_closed(gates):
    host = PluginHost()
    failed = host.add_service("failed", FailsOnEvent())
    stopped = host.add_service("stopped", Recorder())
    host.start_all(timeout=HANG)
    failed.submit(event("x")).exception(timeout=HANG)
    assert failed.state is FAILED
    host.close(timeout=HANG)
    for call in (failed.restart, failed.start, stopped.restart, stopped.start,
                 stopped.stop, host.start_all):
        with pytest.raises(errors.HostClosed):
            call()
    assert (failed.state, stopped.state) == (FAILED, STOPPED)


def test_a_restart_policy_racing_close_never_leaves_a_service_running():
    host = PluginHost()
    policy = RestartPolicy(max_restarts=1000, window=None, backoff=0.0)
    services = [host.add_service("svc%d" % n, Factory(FailsOnEvent),
                                 ServiceConfig(restart=policy)) for n in range(20)]
    host.start_all(timeout=HANG)
    stop = threading.Event()

    def keep_failing(svc: Any) -> None:
        while not stop.is_set():
            try:
                svc.submit(event("x"))
            except errors.PluginServiceError:
                pass
            try:
                svc.restart(timeout=HANG)  # a supervisor racing the shutdown
            except errors.PluginServiceError:
                pass

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(keep_failing, svc) for svc in services[:4]]
        host.close(timeout=HANG)
        stop.set()
        for future in running:
            future.result(timeout=HANG)
    assert all(svc.state in (STOPPED, FAILED) for svc in services), \
        [(svc.name, svc.state) for svc in services]
    for svc in services:
        assert_invariants(svc.status())


def test_close_with_a_timeout_returns_while_a_done_callback_blocks_the_watchdog(gates):
    host = PluginHost()
    svc = host.add_service("svc", WaitsForCancel(), ServiceConfig(dispatch_timeout=0.2))
    host.start_all(timeout=HANG)
    gate, entered = gates.new(), threading.Event()
    future = svc.submit(event("x"))
    future.add_done_callback(lambda f: (entered.set(), gate.wait()))  # on the watchdog
    assert entered.wait(HANG)
    closing = ThreadPoolExecutor(1).submit(host.close, timeout=0.5)
    closing.result(timeout=HANG)  # returns although the callback still blocks
    assert not gate.is_set()
    gate.set()


# -------------------------------------------- the timeout is decided first
class HookedCancel(Recorder):
    """Ignores cancellation, but a cancel hook (what the Ray backend uses to
    kill an actor after the grace) arms a watchdog timer for the same grace and
    records, when it fires, whether the host had already decided the timeout."""

    def __init__(self, host: PluginHost, gate: threading.Event, grace: float) -> None:
        super().__init__()
        self.host, self.gate, self.grace = host, gate, grace
        self.decided_first: List[bool] = []
        self.fired = threading.Event()

    def behave(self, event: IngressEvent, ctx: Any) -> Any:
        watchdog = self.host._watchdog
        handle = self.host.service("svc")

        def fire() -> None:
            self.decided_first.append(handle.status().counters.timed_out == 1)
            self.fired.set()

        ctx._forward_cancel(lambda: watchdog.schedule(
            watchdog_now() + self.grace, fire))
        self.gate.wait()
        return "late"


def watchdog_now() -> float:
    import time
    return time.monotonic()


def test_stop_bound_decides_the_timeout_before_a_cancel_hooks_timer_fires(host, gates):
    gate = gates.new()
    plugin = HookedCancel(host, gate, 0.2)
    svc = host.add_service("svc", plugin, ServiceConfig(dispatch_timeout=None,
                                                        cancel_grace=0.2))
    svc.start(timeout=HANG)
    future = svc.submit(event("stuck"))
    plugin.entered()
    with pytest.raises(errors.ServiceFailed):
        svc.stop(timeout=0.1)
    assert plugin.fired.wait(HANG)
    assert plugin.decided_first == [True]
    assert isinstance(future.exception(timeout=HANG), errors.DispatchTimeout)


# ------------------------------------------------ cleanup after a failure
class Resource(Recorder):
    """Acquires in start(); ``stop()`` and (optionally) ``on_failure`` release."""

    def __init__(self) -> None:
        super().__init__()
        self.acquired = 0
        self.released: List[Any] = []
        self.released_event = threading.Event()

    def start(self) -> None:
        super().start()
        self.acquired += 1

    def behave(self, event: IngressEvent, ctx: Any) -> Any:
        if event.payload == "fail":
            raise ValueError("handler failed")
        return event.payload

    def stop(self) -> None:
        super().stop()
        self.released.append(("stop", threading.current_thread().name))
        self.released_event.set()


class WithOnFailure(Resource):
    def on_failure(self, diagnostic: Any) -> None:
        self.released.append(("on_failure", diagnostic.kind,
                              threading.current_thread().name))
        self.released_event.set()


def test_failed_service_calls_stop_on_its_worker_when_the_plugin_has_no_on_failure(
        start_service):
    plugin = Resource()
    svc = start_service("svc", plugin)  # fail_after=1 by default
    svc.submit(event("fail")).exception(timeout=HANG)
    assert plugin.released_event.wait(HANG)
    assert svc.state is FAILED
    assert plugin.released == [("stop", "svc")]


def test_failed_service_calls_on_failure_instead_of_stop(start_service):
    plugin = WithOnFailure()
    svc = start_service("svc", plugin)
    svc.submit(event("fail")).exception(timeout=HANG)
    assert plugin.released_event.wait(HANG)
    assert plugin.released == [("on_failure", DiagnosticKind.DISPATCH_FAILED, "svc")]
    assert ("stop", "svc") not in plugin.calls


def test_every_life_restarted_by_a_policy_is_cleaned_up(host):
    factory = Factory(Resource)
    svc = host.add_service("svc", factory, ServiceConfig(
        restart=RestartPolicy(max_restarts=2, window=None, backoff=0.0)))
    svc.start(timeout=HANG)
    for life in range(3):
        assert svc.wait_for(RUNNING, HANG)
        svc.submit(event("fail")).exception(timeout=HANG)
        assert factory.built[life].released_event.wait(HANG)
    assert svc.wait_for(FAILED, HANG)
    assert len(factory.built) == 3
    assert [(p.acquired, len(p.released)) for p in factory.built] == [(1, 1)] * 3


def test_a_raising_cleanup_is_recorded_and_never_raised(host, start_service):
    class BrokenCleanup(Resource):
        def on_failure(self, diagnostic: Any) -> None:
            self.released_event.set()
            raise RuntimeError("cleanup broke")

    plugin = BrokenCleanup()
    svc = start_service("svc", plugin)
    svc.submit(event("fail")).exception(timeout=HANG)
    assert plugin.released_event.wait(HANG)
    host.close(timeout=HANG)  # waits for the cleanup still running; raises nothing
    messages = [d.message for d in svc.status().diagnostics]
    assert any("on_failure() after the failure raised RuntimeError: cleanup broke" in m
               for m in messages), messages
    assert svc.state is FAILED


def test_restart_of_a_shared_instance_waits_for_its_cleanup(start_service, gates):
    gate = gates.new()

    class SlowCleanup(Resource):
        def on_failure(self, diagnostic: Any) -> None:
            self.released_event.set()
            gate.wait()
            self.released.append("cleaned")

    plugin = SlowCleanup()
    svc = start_service("svc", plugin)
    svc.submit(event("fail")).exception(timeout=HANG)
    assert plugin.released_event.wait(HANG)
    with ThreadPoolExecutor(1) as pool:
        restarting = pool.submit(svc.restart, timeout=HANG)
        gate.set()
        assert restarting.result(timeout=HANG).state is RUNNING
    assert plugin.released == ["cleaned"]
    assert plugin.acquired == 2  # started again only after the cleanup returned
    assert plugin.busy_at_start == [0, 0]


def test_a_failed_start_or_stop_gets_no_cleanup(start_service, host):
    class UnstartableResource(Resource):
        def start(self) -> None:
            super().start()
            raise RuntimeError("no start")

        def on_failure(self, diagnostic: Any) -> None:
            self.released.append("on_failure")

    plugin = UnstartableResource()
    svc = host.add_service("svc", plugin)
    with pytest.raises(errors.ServiceFailed):
        svc.start(timeout=HANG)
    host.close(timeout=HANG)
    assert plugin.released == []


class FailingPlugin(ServicePlugin):
    """For the subprocess-free Ingress check: minimal plugin without Recorder."""

    ingresses = [Ingress(INGRESS)]

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        raise ValueError("x")


# ------------------------------------------- found in review: bounds and races
class StuckCleanup(Resource):
    """Its ``on_failure`` blocks on a gate (a cleanup that never returns)."""

    gate: threading.Event

    def on_failure(self, diagnostic: Any) -> None:
        self.released_event.set()
        self.gate.wait()


def test_close_without_timeout_is_bounded_by_stop_timeout_for_a_factorys_stuck_cleanup(
        gates):
    gate = gates.new()
    factory = Factory(StuckCleanup)
    StuckCleanup.gate = gate
    host = PluginHost()
    svc = host.add_service("svc", factory, ServiceConfig(stop_timeout=0.3))
    svc.start(timeout=HANG)
    svc.submit(event("fail")).exception(timeout=HANG)
    assert factory.built[0].released_event.wait(HANG)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(host.close).result(timeout=HANG)  # not joined past its bound
        assert not gate.is_set()
        gate.set()


def test_close_with_a_timeout_does_not_wait_for_stopped_plugins_status(gates):
    gate = gates.new()
    host = PluginHost()
    services = [host.add_service("svc%d" % n, BlockingStatus(gate)) for n in range(8)]
    host.start_all(timeout=HANG)
    for svc in services:
        svc.stop(timeout=HANG)
    with ThreadPoolExecutor(1) as pool:
        # Eight stuck status() calls at 1 s each would overrun HANG.
        pool.submit(host.close, timeout=0.2).result(timeout=HANG)
    gate.set()


def test_a_handler_abandoned_past_its_grace_that_returns_is_cleaned_up_before_a_restart(
        host, gates):
    gate = gates.new()
    plugin = Blocking(gate)  # ignores cancellation
    svc = host.add_service("svc", plugin, ServiceConfig(
        dispatch_timeout=0.1, cancel_grace=0.1,
        restart=RestartPolicy(max_restarts=1, window=None, backoff=0.0)))
    svc.start(timeout=HANG)
    svc.submit(event("stuck"))
    plugin.entered()
    assert svc.wait_for(FAILED, HANG)  # abandoned: the shared instance waits for it
    gate.set()
    assert plugin.stopped.wait(HANG)
    assert svc.wait_for(RUNNING, HANG)
    assert [name for name, _ in plugin.calls] == ["start", "handle_ingress", "stop", "start"]


def test_on_failure_gets_its_own_lifes_failure_though_the_next_life_is_already_running(
        host):
    factory = Factory(WithOnFailure)
    svc = host.add_service("svc", factory, ServiceConfig(
        restart=RestartPolicy(max_restarts=1, window=None, backoff=0.0)))
    svc.start(timeout=HANG)
    failing = svc.submit(event("fail"))
    # The done-callback runs on the failed life's worker before its cleanup: hold
    # it there until the restarted life is RUNNING (and has cleared its failure).
    failing.add_done_callback(lambda future: svc.wait_for(RUNNING, HANG))
    assert factory.built and factory.built[0].released_event.wait(HANG)
    [(what, kind, _thread)] = factory.built[0].released
    assert (what, kind) == ("on_failure", DiagnosticKind.DISPATCH_FAILED)


def test_restart_waiting_for_a_cleanup_keeps_its_own_timeout(start_service, gates):
    gate = gates.new()
    StuckCleanup.gate = gate
    plugin = StuckCleanup()
    svc = start_service("svc", plugin, stop_timeout=30.0)
    svc.submit(event("fail")).exception(timeout=HANG)
    assert plugin.released_event.wait(HANG)
    with ThreadPoolExecutor(1) as pool:
        restarting = pool.submit(svc.restart, timeout=0.3)
        with pytest.raises(errors.LifecycleError):
            restarting.result(timeout=HANG)
    assert not gate.is_set()
    gate.set()


def test_concurrent_status_callers_share_one_plugin_status_call(host, gates):
    gate = gates.new()

    class Slowish(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.entered_status = threading.Event()
            self.status_calls = 0

        def status(self) -> Any:
            self.status_calls += 1
            self.entered_status.set()
            gate.wait(HANG)
            return {"answer": 42}

    plugin = Slowish()
    svc = host.add_service("svc", plugin)
    gate.set()
    svc.start(timeout=HANG)  # its status() answers at once here
    gate.clear()
    plugin.entered_status.clear()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(svc.status)
        assert plugin.entered_status.wait(HANG)
        opener = threading.Timer(0.1, gate.set)  # well inside the 1 s bound
        opener.start()
        second = svc.status()  # while the first call is running: shares it
        opener.join()
        assert first.result(timeout=HANG).plugin_status == {"answer": 42}
    # Shared (or, had this thread stalled past the timer, asked anew): never None.
    assert second.plugin_status == {"answer": 42}


def test_a_class_level_status_descriptor_never_runs_under_the_service_lock(host, gates,
                                                                           background):
    gate = gates.new()
    entered = threading.Event()

    class Descriptor:
        def __get__(self, instance: Any, owner: Any) -> Any:
            if instance is None:  # looked up on the class
                entered.set()
                gate.wait(HANG)
            return lambda: {"ok": True}

    class Plugin(Recorder):
        status = Descriptor()

    svc = host.add_service("svc", Plugin())
    gate.set()
    svc.start(timeout=HANG)
    gate.clear()
    entered.clear()
    # The lookup of status on the class is static: the descriptor is not run, so
    # nothing blocks under (or outside) the lock, and the plugin still answers.
    assert background(svc.status).result(timeout=HANG).plugin_status == {"ok": True}
    assert background(svc.submit, event("x")).result(timeout=HANG).result(
        timeout=HANG) == "x"
    assert not entered.is_set()
    gate.set()
