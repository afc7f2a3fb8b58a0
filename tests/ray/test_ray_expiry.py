"""Event deadlines on the Ray backend: an expired event is never sent to the
actor. The side channel is the actor's own plugin: ``("count",)`` answers how
many events it handled, so an expired event that reached it would show there.
The ``host`` fixture checks every service's accounts before and after close.
"""
from __future__ import annotations

import datetime as dt
import time

import pytest
from support.backends import BackendGates, started
from support.checks import assert_invariants
from support.contract import event
from support.timing import PROCESS_HANG

from plugin_service import DiagnosticKind, PluginHost, errors

pytestmark = pytest.mark.timeout(120)

UTC = dt.timezone.utc
SOON = 0.5  # in the future at submit, even on a loaded machine


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(UTC) + dt.timedelta(seconds=seconds)


def test_events_expired_behind_a_held_handler_are_never_sent(host: PluginHost,
                                                             gates: BackendGates) -> None:
    svc = started(host, queue_size=16)
    gate = gates.new()
    held = svc.submit(event("gate", gate))
    assert gate.entered()
    expiring = [svc.submit(event("echo", k, expires_at=_in(SOON))) for k in range(4)]
    kept = svc.submit(event("echo", "kept"))
    for future in expiring:
        error = future.exception(timeout=PROCESS_HANG)
        assert isinstance(error, errors.EventExpired)
        assert error.kind is DiagnosticKind.EVENT_EXPIRED
    assert not held.done()
    assert_invariants(svc.status())
    gate.open()
    assert held.result(PROCESS_HANG) == "released"
    assert kept.result(PROCESS_HANG) == "kept"
    # The gate, "kept" and this one: none of the expired reached the actor.
    assert svc.submit(event("count")).result(PROCESS_HANG) == 3
    assert svc.status().counters.expired == 4


def test_max_queue_age_on_ray(host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, queue_size=16, max_queue_age=SOON)
    gate = gates.new()
    held = svc.submit(event("gate", gate))
    assert gate.entered()
    waiting = [svc.submit(event("echo", k)) for k in range(3)]
    for future in waiting:
        error = future.exception(timeout=PROCESS_HANG)
        assert isinstance(error, errors.EventExpired) and error.expired_by == "max_queue_age"
    gate.open()
    assert held.result(PROCESS_HANG) == "released"
    assert svc.submit(event("count")).result(PROCESS_HANG) == 2


def test_events_with_a_future_deadline_run_in_order(host: PluginHost,
                                                    gates: BackendGates) -> None:
    svc = started(host, queue_size=32)
    gate = gates.new()
    held = svc.submit(event("gate", gate))
    assert gate.entered()
    futures = [svc.submit(event("count", expires_at=_in(3600) if k % 2 else None))
               for k in range(10)]
    gate.open()
    held.result(PROCESS_HANG)
    assert [f.result(PROCESS_HANG) for f in futures] == list(range(2, 12))
    assert svc.status().counters.expired == 0


def test_the_actor_ctx_deadline_is_bounded_by_expires_at(host: PluginHost) -> None:
    svc = started(host, dispatch_timeout=3600.0)
    before = time.monotonic()
    seen = svc.submit(event("ctx", expires_at=_in(60))).result(PROCESS_HANG)
    assert seen["has_deadline"]
    assert 0.0 < seen["remaining"] <= 60.0
    assert time.monotonic() - before < PROCESS_HANG


def test_an_event_with_a_deadline_is_not_sent_ahead_in_the_window(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, queue_size=16)
    first, second = gates.new(), gates.new()
    held = svc.submit(event("gate", first))
    assert first.entered()
    # Queued together: when ``first`` opens, the worker sends ``second``'s event
    # and would hand the rest ahead of their turn, into the actor's queue.
    then = svc.submit(event("gate", second))
    expiring = [svc.submit(event("echo", k, expires_at=_in(SOON))) for k in range(3)]
    first.open()
    assert held.result(PROCESS_HANG) == "released"
    assert second.entered()
    for future in expiring:
        assert isinstance(future.exception(timeout=PROCESS_HANG), errors.EventExpired)
    second.open()
    assert then.result(PROCESS_HANG) == "released"
    assert svc.submit(event("count")).result(PROCESS_HANG) == 3
