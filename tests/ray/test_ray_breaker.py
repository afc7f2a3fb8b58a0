"""The circuit breaker on the Ray backend: the pipeline hands events ahead only
while the breaker is closed, and whatever was handed after a failure comes back
unrun, so an open breaker holds every later event in the host's queue.

Open times are real but short; the tests only check lower bounds on them."""
from __future__ import annotations

import time

import pytest
from support.backends import BackendGates, failure_of, started
from support.contract import event
from support.states import RUNNING, STOPPED
from support.timing import PROCESS_HANG

from plugin_service import BreakerPolicy, BreakerState, PluginHost, errors

pytestmark = pytest.mark.timeout(120)


def test_ray_breaker_opens_holds_then_probes_and_closes(host: PluginHost) -> None:
    open_for = 0.3
    svc = started(host, breaker=BreakerPolicy(failures=1, open_for=open_for))
    before = time.monotonic()
    assert isinstance(failure_of(svc.submit(event("raise", "down"))), errors.DispatchFailed)
    status = svc.status()
    assert status.state is RUNNING and status.breaker.state is BreakerState.OPEN
    held = [svc.submit(event("count")) for _ in range(3)]
    assert [future.result(PROCESS_HANG) for future in held] == [2, 3, 4]
    assert time.monotonic() - before >= open_for  # the probe never went early
    status = svc.status()
    assert status.breaker.state is BreakerState.CLOSED and status.breaker.trips == 1
    assert status.counters.dropped == 0


def test_ray_events_handed_ahead_of_a_failure_wait_while_the_breaker_is_open(
        host: PluginHost, gates: BackendGates) -> None:
    svc = started(host, queue_size=8, breaker=BreakerPolicy(failures=1, open_for=60.0))
    gate = gates.new()
    held = svc.submit(event("gate", gate))
    assert gate.entered()
    failing = svc.submit(event("raise", "down"))
    behind = [svc.submit(event("count")) for _ in range(2)]
    gate.open()  # the three go to the actor together; the failure sends back the rest
    assert held.result(PROCESS_HANG) == "released"
    assert isinstance(failure_of(failing), errors.DispatchFailed)
    status = svc.status()
    assert status.breaker.state is BreakerState.OPEN
    assert status.queue_depth == 2 and status.in_flight == 0
    final = svc.stop(timeout=0.3)
    assert final.state is STOPPED
    for future in behind:
        assert isinstance(failure_of(future), errors.ServiceStopped)
    assert final.counters.succeeded == 1 and final.counters.dropped == 2
