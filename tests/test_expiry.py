"""Event deadlines (issue 15, section 1): ``IngressEvent.expires_at`` and
``ServiceConfig.max_queue_age``. An event whose deadline passes while it waits
in the queue is never handed to the plugin: its future raises ``EventExpired``,
it is a dead letter and counts in ``expired``.

Every blocked handler waits on a gate the test holds; a wait for a deadline to
pass waits on the clock's own condition (``_past``), never on a bare sleep.
"""
from __future__ import annotations

import datetime as dt
import pickle
import threading
import time
from typing import Any, List, Optional, Tuple

import attrs
import pytest
from support.checks import assert_invariants
from support.timing import HANG

from plugin_service import (
    DiagnosticKind,
    Ingress,
    IngressEvent,
    PluginHost,
    RetryPolicy,
    ServiceConfig,
    ServicePlugin,
    errors,
)

pytestmark = pytest.mark.timeout(60)

UTC = dt.timezone.utc
#: A deadline that a queued event surely outlives only when something holds it
#: (a gated handler): long enough to be in the future at submit on a loaded machine.
SOON = 0.3


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(UTC) + dt.timedelta(seconds=seconds)


def _past(moment: dt.datetime) -> None:
    """Return once the wall clock is past ``moment`` (bounded by HANG)."""
    waiter = threading.Event()
    bound = time.monotonic() + HANG
    while dt.datetime.now(UTC) <= moment:
        assert time.monotonic() < bound, "the clock never passed %s" % moment
        waiter.wait(0.005)


class Recorder(ServicePlugin):
    """Records every payload it handles and the ``ctx.deadline`` it saw; the
    payload ``("hold", gate, entered)`` waits at ``gate`` (ignoring cancellation)."""

    ingresses = [Ingress("in")]

    def __init__(self) -> None:
        self.handled: List[Any] = []
        self.contexts: List[Tuple[Optional[float], Optional[float], float]] = []

    def handle_ingress(self, event: IngressEvent, ctx: Any) -> Any:
        self.handled.append(event.payload)
        self.contexts.append((ctx.deadline, ctx.remaining(), time.monotonic()))
        if isinstance(event.payload, tuple) and event.payload[0] == "hold":
            event.payload[2].set()
            assert event.payload[1].wait(HANG)
            return "held"
        if event.payload == "raise":
            raise ValueError("always")
        return event.payload


def _event(payload: Any, **fields: Any) -> IngressEvent:
    return IngressEvent("in", "test", payload, **fields)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def svc(host: PluginHost, recorder: Recorder):
    def make(**config: Any):
        handle = host.add_service("svc-%d" % len(host.services()), recorder,
                                  ServiceConfig(**config))
        handle.start(timeout=HANG)
        return handle
    return make


def _hold(handle: Any, gates: Any) -> Tuple[Any, threading.Event]:
    """Put a held event in flight; returns its future and its gate."""
    gate, entered = gates.new(), threading.Event()
    future = handle.submit(_event(("hold", gate, entered)))
    assert entered.wait(HANG)
    return future, gate


class _Timers:
    """Wraps a host's watchdog to see (and, with ``drop``, refuse) the expiry
    timers services schedule on it."""

    def __init__(self, host: PluginHost, drop: bool = False) -> None:
        self.watchdog = host._watchdog
        self.scheduled = 0
        self._schedule = self.watchdog.schedule
        self._drop = drop
        self.watchdog.schedule = self._wrapped  # type: ignore[method-assign]

    def _wrapped(self, when: float, callback: Any, *args: Any) -> Any:
        if getattr(callback, "__name__", "") == "_on_expiry_timer":
            self.scheduled += 1
            if self._drop:
                return self._schedule(when, lambda *_args: None)  # fires, does nothing
        return self._schedule(when, callback, *args)

    def live(self) -> int:
        with self.watchdog._lock:
            return sum(1 for _when, _n, timer in self.watchdog._heap
                       if not timer.cancelled
                       and getattr(timer.callback, "__name__", "") == "_on_expiry_timer")


# ------------------------------------------------------------ expiry itself
def test_events_expire_behind_a_stuck_handler_while_it_still_runs(svc, recorder, gates):
    handle = svc()
    held, gate = _hold(handle, gates)
    expiring = [handle.submit(_event("late-%d" % k, expires_at=_in(SOON + k * 0.01)))
                for k in range(3)]
    kept = handle.submit(_event("kept", expires_at=_in(3600)))
    for future in expiring:
        error = future.exception(timeout=HANG)
        assert isinstance(error, errors.EventExpired)
        assert error.kind is DiagnosticKind.EVENT_EXPIRED
        assert error.expired_by == "expires_at"
        assert error.correlation_id == future.event.correlation_id
        assert error.deadline == future.event.expires_at
        assert error.late >= 0.0
    assert not held.done()  # the handler is still held: the watchdog decided
    status = handle.status()
    assert_invariants(status)
    assert (status.counters.expired, status.queue_depth, status.in_flight) == (3, 1, 1)
    gate.set()
    assert held.result(HANG) == "held" and kept.result(HANG) == "kept"
    assert [p for p in recorder.handled if isinstance(p, str)] == ["kept"]
    assert_invariants(handle.status())


def test_expiry_is_decided_where_the_worker_takes_the_event(host, svc, recorder, gates):
    _Timers(host, drop=True)  # no expiry timer ever fires: only the take decides
    handle = svc()
    held, gate = _hold(handle, gates)
    deadline = _in(SOON)
    late = handle.submit(_event("late", expires_at=deadline))
    after = handle.submit(_event("after"))
    _past(deadline)
    assert not late.done()
    gate.set()
    with pytest.raises(errors.EventExpired) as raised:
        late.result(HANG)
    assert raised.value.late > 0.0
    assert after.result(HANG) == "after"
    assert "late" not in recorder.handled
    status = handle.status()
    assert_invariants(status)
    assert (status.counters.expired, status.counters.succeeded) == (1, 2)


def test_max_queue_age_expires_an_event_that_waited_too_long(svc, recorder, gates):
    handle = svc(max_queue_age=SOON)
    held, gate = _hold(handle, gates)
    accepted = dt.datetime.now(UTC)
    waiting = handle.submit(_event("waiting"))
    error = waiting.exception(timeout=HANG)
    assert isinstance(error, errors.EventExpired)
    assert error.expired_by == "max_queue_age"
    assert accepted < error.deadline < accepted + dt.timedelta(seconds=SOON + HANG)
    gate.set()
    assert held.result(HANG) == "held"
    assert handle.submit(_event("fresh")).result(HANG) == "fresh"  # taken at once
    assert "waiting" not in recorder.handled


def test_the_earlier_of_expires_at_and_max_queue_age_decides(svc, gates):
    handle = svc(max_queue_age=3600.0)
    held, gate = _hold(handle, gates)
    error = handle.submit(_event("own", expires_at=_in(SOON))).exception(timeout=HANG)
    assert isinstance(error, errors.EventExpired) and error.expired_by == "expires_at"
    gate.set()


def test_the_invariant_holds_at_every_snapshot_while_events_expire(svc, gates):
    handle = svc(queue_size=64)
    held, gate = _hold(handle, gates)
    futures = [handle.submit(_event(k, expires_at=_in(SOON + (k % 7) * 0.01)))
               for k in range(40)]
    futures += [handle.submit(_event("kept-%d" % k)) for k in range(5)]
    while not all(future.done() for future in futures[:40]):
        assert_invariants(handle.status())
    status = handle.status()
    assert_invariants(status)
    assert (status.counters.expired, status.queue_depth) == (40, 5)
    gate.set()
    for future in futures[40:]:
        future.result(HANG)
    assert_invariants(handle.status())


def test_an_expired_event_is_a_dead_letter_with_its_diagnostic(host, svc, gates):
    handle = svc()
    held, gate = _hold(handle, gates)
    event = _event({"token": "s3cret"}, expires_at=_in(SOON))
    handle.submit(event).exception(timeout=HANG)
    letter = host.dead_letters()[-1]
    assert letter.event is event
    assert letter.diagnostic.kind is DiagnosticKind.EVENT_EXPIRED
    assert DiagnosticKind.EVENT_EXPIRED.value == "event_expired"
    assert handle.status().last_error == letter.diagnostic
    exported = letter.to_dict()
    assert "s3cret" not in repr(exported)
    assert exported["event"]["expires_at"] is not None
    gate.set()


def test_a_posted_event_expires_counted_and_dead_lettered(host, svc, recorder, gates):
    handle = svc()
    held, gate = _hold(handle, gates)
    cid = handle.post(_event("posted", expires_at=_in(SOON)))
    marker = handle.submit(_event("marker", expires_at=_in(SOON + 0.05)))
    assert isinstance(marker.exception(timeout=HANG), errors.EventExpired)
    assert handle.status().counters.expired == 2
    assert [d.event.correlation_id for d in host.dead_letters()] == [
        cid, marker.event.correlation_id]
    gate.set()
    held.result(HANG)
    assert "posted" not in recorder.handled


def test_batches_expire_per_event(svc, gates):
    handle = svc(queue_size=8)
    held, gate = _hold(handle, gates)
    futures = handle.submit_many([_event("a", expires_at=_in(SOON)), _event("b"),
                                  _event("c", expires_at=_in(SOON))])
    assert isinstance(futures[2].exception(timeout=HANG), errors.EventExpired)
    assert isinstance(futures[0].exception(timeout=HANG), errors.EventExpired)
    assert not futures[1].done()
    gate.set()
    assert futures[1].result(HANG) == "b"
    assert_invariants(handle.status())


def test_a_withdrawn_event_is_dropped_not_expired(svc, gates):
    handle = svc()
    held, gate = _hold(handle, gates)
    withdrawn = handle.submit(_event("withdrawn", expires_at=_in(SOON)))
    later = handle.submit(_event("later", expires_at=_in(SOON + 0.05)))
    assert withdrawn.cancel()
    assert isinstance(later.exception(timeout=HANG), errors.EventExpired)
    counters = handle.status().counters
    assert (counters.expired, counters.dropped) == (1, 1)
    gate.set()
    assert_invariants(handle.status())


def test_stop_without_drain_drops_queued_events_once(svc, gates):
    handle = svc(stop_timeout=HANG)
    held, gate = _hold(handle, gates)
    queued = handle.submit(_event("queued", expires_at=_in(3600)))
    stopping = threading.Thread(target=handle.stop, kwargs={"drain": False, "timeout": HANG})
    stopping.start()
    assert isinstance(queued.exception(timeout=HANG), errors.ServiceStopped)
    gate.set()
    stopping.join(HANG)
    counters = handle.status().counters
    assert (counters.expired, counters.dropped) == (0, 1)
    assert_invariants(handle.status())


# ---------------------------------------------------------------- the timer
def test_one_expiry_timer_per_service_not_one_per_event(host, svc, gates):
    timers = _Timers(host)
    handle = svc(queue_size=256)
    held, gate = _hold(handle, gates)
    # Deadlines in decreasing order: each new one is the earliest so far.
    futures = [handle.submit(_event(k, expires_at=_in(SOON + (200 - k) * 0.001)))
               for k in range(200)]
    assert timers.live() <= 1
    for future in futures:
        assert isinstance(future.exception(timeout=HANG), errors.EventExpired)
    assert timers.live() == 0
    gate.set()


def test_same_age_deadlines_schedule_one_timer_until_it_fires(host, svc, gates):
    timers = _Timers(host, drop=True)
    handle = svc(queue_size=128, max_queue_age=3600.0)
    held, gate = _hold(handle, gates)
    for k in range(100):
        handle.submit(_event(k))
    assert timers.scheduled == 1
    gate.set()


# ---------------------------------------------------------- ctx.deadline
@pytest.mark.parametrize("dispatch_timeout, own, earlier", [
    (3600.0, 60.0, "own"), (60.0, 3600.0, "dispatch"), (None, 60.0, "own")])
def test_ctx_deadline_is_the_earlier_of_the_dispatch_deadline_and_the_events(
        svc, recorder, dispatch_timeout, own, earlier):
    handle = svc(dispatch_timeout=dispatch_timeout)
    before = time.monotonic()
    assert handle.submit(_event("x", expires_at=_in(own))).result(HANG) == "x"
    deadline, remaining, at = recorder.contexts[-1]
    expected = own if earlier == "own" else dispatch_timeout
    assert deadline is not None and remaining is not None
    assert before + expected - HANG < deadline <= at + expected + 0.01
    assert remaining <= expected + 0.01


def test_without_deadlines_ctx_deadline_is_the_dispatch_deadline(svc, recorder):
    handle = svc(dispatch_timeout=None)
    handle.submit(_event("x")).result(HANG)
    assert recorder.contexts[-1][:2] == (None, None)


def test_retries_end_at_expires_at(svc, recorder):
    handle = svc(retry=RetryPolicy(max_attempts=1000, backoff=0.02, max_backoff=0.02))
    expires = _in(SOON)
    future = handle.submit(_event("raise", expires_at=expires))
    assert isinstance(future.exception(timeout=HANG), errors.DispatchFailed)
    attempts = len(recorder.handled)
    assert 1 <= attempts < 1000
    assert all(deadline is not None for deadline, _r, _at in recorder.contexts)
    assert handle.status().counters.expired == 0


# --------------------------------------------------------- refusals, fields
@pytest.mark.parametrize("expires_at, words", [
    (dt.datetime.now(), "naive"),
    (dt.datetime.now(UTC) - dt.timedelta(seconds=1), "already past"),
    ("2030-01-01", "must be a datetime"),
])
def test_a_bad_expires_at_is_refused_at_submit(svc, expires_at, words):
    handle = svc()
    with pytest.raises(errors.InvalidEvent, match=words):
        handle.submit(_event("x", expires_at=expires_at))
    with pytest.raises(errors.InvalidEvent, match=words):
        handle.post(_event("x", expires_at=expires_at))
    with pytest.raises(errors.BatchRejected):
        handle.submit_many([_event("ok"), _event("x", expires_at=expires_at)])
    status = handle.status()
    assert status.rejections[DiagnosticKind.INVALID_EVENT] == 3
    assert status.counters.expired == 0


def test_an_aware_expires_at_in_another_zone_is_accepted(svc):
    zone = dt.timezone(dt.timedelta(hours=5))
    handle = svc()
    assert handle.submit(_event("x", expires_at=dt.datetime.now(zone) + dt.timedelta(
        seconds=60))).result(HANG) == "x"


def test_expires_at_is_part_of_the_event():
    expires = _in(60)
    event = _event("x", expires_at=expires)
    assert event.expires_at == expires and _event("y").expires_at is None
    assert "expires_at=" in repr(event)
    assert pickle.loads(pickle.dumps(event)) == event
    assert attrs.evolve(event, attempt=2).expires_at == expires
    with pytest.raises(TypeError):
        IngressEvent("in", "test", None, expires)  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize("value", [-1.0, 0, 0.0, float("nan"), float("inf"), True, "1"])
def test_max_queue_age_is_checked_like_other_numbers(value):
    with pytest.raises(ValueError, match="max_queue_age"):
        ServiceConfig(max_queue_age=value)


def test_max_queue_age_defaults_to_none_and_takes_seconds():
    assert ServiceConfig().max_queue_age is None
    assert ServiceConfig(max_queue_age=2).max_queue_age == 2


# ------------------------------------------------------------ with a breaker
def test_an_open_breaker_never_hands_over_an_expired_event_as_its_probe(host, recorder):
    from plugin_service import BreakerPolicy, BreakerState

    _Timers(host, drop=True)  # no expiry timer fires: the breaker's take decides
    handle = host.add_service("guarded", recorder, ServiceConfig(
        fail_after=None, breaker=BreakerPolicy(failures=1, open_for=2 * SOON)))
    handle.start(timeout=HANG)
    with pytest.raises(errors.DispatchFailed):
        handle.submit(_event("raise")).result(HANG)  # opens the breaker
    deadline = _in(SOON)  # passes while the breaker is open
    late = handle.submit(_event("late", expires_at=deadline))
    after = handle.submit(_event("after"))
    with pytest.raises(errors.EventExpired):
        late.result(HANG)
    assert after.result(HANG) == "after"  # the probe, and it closed the breaker
    assert recorder.handled == ["raise", "after"]
    status = handle.status()
    assert status.breaker.state is BreakerState.CLOSED
    assert (status.counters.expired, status.counters.succeeded) == (1, 1)
    assert_invariants(status)
