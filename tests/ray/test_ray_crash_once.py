"""After a crash, nothing handed to the actor ahead runs twice (issue 13, 1).

Events are handed to the actor ahead of their turn. When the actor dies, Ray
fails every outstanding call, also calls that ran and returned but whose reply
had not reached the host. The host used to take the oldest as the crash and queue
the others again: events that had run ran a second time on the fresh actor (the
crashing one too, so one crash cost two or three restarts), and a completed event
was blamed. The actor now writes down what it begins in a record that outlives
its process; the host reads it after a crash. An event that never began goes to
the fresh actor. One that began ends in ``DispatchFailed`` (cause
``PluginCrashed``) saying so, and never runs again.

Each round hands six events over at once (three quick ones, the one that exits,
two behind it), many rounds, so that replies lost with the process are likely.
The journal the plugin writes (a file) counts every run.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from support.backends import TIMEOUT
from support.journal import Journal, round_of, runs
from support.states import FAILED, RUNNING
from support.timing import PROCESS_HANG

from plugin_service import PluginHost, RestartPolicy, ServiceConfig, errors

pytestmark = pytest.mark.timeout(300)
ROUNDS = 8


def _outcome(future):
    error = future.exception(timeout=PROCESS_HANG)
    return ("ok", future.result()) if error is None else ("error", error)


def test_a_crash_among_events_handed_ahead_runs_nothing_twice(
        host: PluginHost, tmp_path: Path) -> None:
    journal = str(tmp_path / "journal")
    svc = host.add_service("svc", Journal, ServiceConfig(
        queue_size=8, restart=RestartPolicy(max_restarts=1000, window=None, backoff=0.0)))
    svc.start(timeout=PROCESS_HANG)
    for number in range(ROUNDS):
        assert svc.wait_for(RUNNING, timeout=PROCESS_HANG)
        events = round_of(journal, number)
        futures = [svc.submit(event) for event in events]  # handed over together
        outcomes = [_outcome(future) for future in futures]
        ran = runs(journal)
        tags = [event.payload[1] for event in events]
        assert all(ran.get(tag, 0) <= 1 for tag in tags), (number, ran)
        assert all(ran.get(tag) == 1 for tag in tags), (number, ran)  # all began once
        *before, crashed, after0, after1 = zip(tags, outcomes)
        for tag, (how, value) in before:  # ran and returned: its value, or lost
            if how == "error":
                assert isinstance(value, errors.DispatchFailed), (tag, value)
                assert isinstance(value.__cause__, errors.PluginCrashed), (tag, value)
                assert "ran" in str(value.__cause__) and "not run again" in str(
                    value.__cause__), (tag, value.__cause__)
            else:
                assert value == tag
        how, value = crashed[1]
        assert how == "error" and isinstance(value.__cause__, errors.PluginCrashed)
        assert "while it ran" in str(value.__cause__), value.__cause__
        # Never begun before the crash: they ran once, on the fresh actor.
        assert [after0[1], after1[1]] == [("ok", after0[0]), ("ok", after1[0])]
    assert svc.wait_for(RUNNING, timeout=PROCESS_HANG)
    assert svc.status().restarts == ROUNDS  # one crash, one restart


def test_without_a_restart_the_event_that_crashed_is_the_one_said_to_have(
        host: PluginHost, tmp_path: Path) -> None:
    journal = str(tmp_path / "journal")
    svc = host.add_service("svc", Journal, ServiceConfig(queue_size=8, fail_after=None))
    svc.start(timeout=PROCESS_HANG)
    events = round_of(journal, 0)
    futures = [svc.submit(event) for event in events]
    outcomes = [_outcome(future) for future in futures]
    assert svc.wait_for(FAILED, timeout=TIMEOUT)
    ran = runs(journal)
    tags = [event.payload[1] for event in events]
    assert [ran.get(tag, 0) for tag in tags] == [1, 1, 1, 1, 0, 0]
    how, value = outcomes[3]
    assert how == "error" and "while it ran" in str(value.__cause__), value
    for how, value in outcomes[:3]:  # none of them is blamed for the crash
        assert how == "ok" or "while it ran" not in str(value.__cause__), value
    for how, value in outcomes[4:]:  # never began: dropped with the failed service
        assert how == "error" and isinstance(value, errors.ServiceFailed), value
