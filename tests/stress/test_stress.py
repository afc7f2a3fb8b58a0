"""Stress: under load and faults, every submitted event is accounted for exactly once.

8 producers push events at 50 services (handlers that succeed, raise, time out
cooperatively, ignore cancellation, or block on a gate) while a fault injector
stops services (with and without drain) and restarts them, services fail through
``fail_after`` and come back through a ``RestartPolicy`` or a manual restart, and
a ninth thread checks the invariants in ``status()`` snapshots. The default run
is a short version; ``pytest -m stress`` runs the 200k-event one. Each run prints
its figures and records them in ``/tmp/stress_figures.json``.
"""
from __future__ import annotations

import collections
import importlib.util
import json
import pathlib
import sys

import pytest

from plugin_service import DiagnosticKind


def _load_workload():
    # tests/ is not a package: load the sibling module by its path.
    name = "plugin_service_stress_workload"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, pathlib.Path(__file__).with_name("_workload.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


workload = _load_workload()

FIGURES = pathlib.Path("/tmp/stress_figures.json")
CLOSE_BOUND = 30.0

#: The outcome of a future -> the counter it belongs to; how a done future's outcome is read.
COUNTER_OF = workload.COUNTER_OF
outcome_of = workload.outcome_of
#: The outcome of a future -> the kind of its dead letter (cancelled: none).
DEAD_LETTER_OF = {
    "failed": DiagnosticKind.DISPATCH_FAILED,
    "timed_out": DiagnosticKind.DISPATCH_TIMEOUT,
    "stopped": DiagnosticKind.SERVICE_STOPPED,
    "service_failed": DiagnosticKind.SERVICE_FAILED,
}
NEVER_DISPATCHED = ("stopped", "service_failed", "cancelled")


def record_figures(run_id: str, figures: dict) -> None:
    try:
        known = json.loads(FIGURES.read_text())
    except (OSError, ValueError):
        known = {}
    known[run_id] = figures
    FIGURES.write_text(json.dumps(known, indent=2, sort_keys=True))
    print("\nstress figures (%s): %s" % (run_id, json.dumps(figures, sort_keys=True)))


@pytest.mark.parametrize("events", [
    pytest.param(20_000, id="short"),
    pytest.param(200_000, id="long",
                 marks=[pytest.mark.stress, pytest.mark.timeout(600)]),
])
def test_every_submitted_event_is_accounted_for_exactly_once(events, request):
    run = workload.run_stress(events, close_bound=CLOSE_BOUND)
    host = run.host

    # Every submit was made and is recorded once: rejected with a typed error or accepted.
    assert run.unexpected == []
    assert run.thread_crashes == []
    assert run.pushed == events
    assert len(run.accepted) + len(run.rejected) == events
    assert sum(run.kinds_pushed.values()) == events
    assert run.close_seconds < CLOSE_BOUND

    # Every accepted future is done, in exactly one of the allowed outcomes.
    pending = [a for a in run.accepted if not a.future.done()]
    assert pending == []
    outcomes = [outcome_of(a.future) for a in run.accepted]
    assert sorted(set(outcomes) - set(COUNTER_OF)) == []

    # Each future's done-callback ran exactly once, after its outcome was counted.
    calls = run.resolutions.calls
    assert [a.event.correlation_id for a in run.accepted if calls[a.event.correlation_id] != 1] \
        == []
    assert sum(calls.values()) == len(run.accepted)
    assert run.resolutions.early == []

    # No correlation id is used twice.
    ids = [a.event.correlation_id for a in run.accepted]
    assert len(set(ids)) == len(ids)

    # A cancel() that returned True withdrew the event; one that returned False did not.
    for record, outcome in zip(run.accepted, outcomes):
        assert (outcome == "cancelled") == (record.cancel_tried and record.cancel_returned), (
            record.kind, record.cancel_tried, record.cancel_returned, outcome)

    # Each dispatched event reached its plugin exactly once (first delivery); none of
    # the withdrawn or dropped ones ever did.
    first = run.tally.first_deliveries
    for record, outcome in zip(run.accepted, outcomes):
        expected = 0 if outcome in NEVER_DISPATCHED else 1
        assert first[record.event.correlation_id] == expected, (record.kind, outcome)

    # Outcomes agree with the handlers: "ok" never fails and returns its value;
    # "raise" never succeeds.
    for record, outcome in zip(run.accepted, outcomes):
        if record.kind == "ok":
            assert outcome != "failed"
            if outcome == "succeeded":
                assert record.future.result(timeout=0) == ("ok", record.event.correlation_id)
        if record.kind == "raise":
            assert outcome != "succeeded"

    # The counters of every service match the test's own tally.
    final = host.status().services
    expected_counters = {name: collections.Counter() for name in final}
    for record, outcome in zip(run.accepted, outcomes):
        tally = expected_counters[record.service]
        tally["enqueued"] += 1
        tally[COUNTER_OF[outcome]] += 1
    rejections = collections.Counter(name for name, _ in run.rejected)
    for name, status in final.items():
        c = status.counters
        tally = expected_counters[name]
        assert (c.enqueued, c.succeeded, c.failed, c.timed_out, c.dropped, c.rejected) == (
            tally["enqueued"], tally["succeeded"], tally["failed"], tally["timed_out"],
            tally["dropped"], rejections[name]), name
        assert c.retried == run.tally.redeliveries[name], name
        assert (status.queue_depth, status.in_flight) == (0, 0), name
    assert workload.check_snapshot(host.status(), {}) == []

    # Every failed, timed-out or dropped event (not the cancelled ones) is one dead letter.
    letters = host.dead_letters()
    expected_letters = collections.Counter(
        (record.service, record.event.correlation_id, DEAD_LETTER_OF[outcome])
        for record, outcome in zip(run.accepted, outcomes) if outcome in DEAD_LETTER_OF)
    found_letters = collections.Counter(
        (letter.service, letter.event.correlation_id, letter.diagnostic.kind)
        for letter in letters)
    assert found_letters == expected_letters
    assert len(letters) == sum(expected_letters.values())

    # The status snapshots taken during the run all kept the invariants.
    assert run.snapshot_violations == []
    assert run.snapshots >= 50

    # The run really exercised every path.
    counted = collections.Counter(outcomes)
    for outcome in COUNTER_OF:
        assert counted[outcome] > 0, (outcome, counted)
    rejected_kinds = collections.Counter(type(error).__name__ for _, error in run.rejected)
    for kind in ("QueueFull", "ServiceStopped", "ServiceFailed"):
        assert rejected_kinds[kind] > 0, (kind, rejected_kinds)
    assert run.lifecycle_ops["stop drain=True"] > 0
    assert run.lifecycle_ops["stop drain=False"] > 0
    assert run.lifecycle_ops["manual restart after failure"] > 0
    manual = sum(run.lifecycle_ops[op] for op in ("restart after stop",
                                                  "manual restart after failure"))
    restarts = sum(status.restarts for status in final.values())
    assert restarts > manual  # some were automatic (RestartPolicy)
    assert sum(run.tally.redeliveries.values()) > 0

    handler_faults = sum(run.kinds_pushed[kind] for kind in ("raise", "coop", "ignore", "block"))
    record_figures(request.node.callspec.id, {
        "events_pushed": run.pushed,
        "accepted": len(run.accepted),
        "rejected_at_submit": dict(rejected_kinds),
        "outcomes": dict(counted),
        "dead_letters": len(letters),
        "handler_faults_pushed": handler_faults,
        "handler_mix_pushed": dict(run.kinds_pushed),
        "lifecycle_faults": dict(run.lifecycle_ops),
        "lifecycle_refused": dict(run.lifecycle_refused),
        "restarts_manual": manual,
        "restarts_automatic": restarts - manual,
        "redeliveries": sum(run.tally.redeliveries.values()),
        "status_snapshots_checked": run.snapshots,
        "services": len(final),
        "producers": workload.PRODUCERS,
        "run_seconds": round(run.run_seconds, 2),
        "close_seconds": round(run.close_seconds, 3),
    })
