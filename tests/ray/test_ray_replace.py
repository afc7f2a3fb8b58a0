"""Replacing a plugin on the Ray backend: the new class runs in a new actor, and
the queue, including what was handed ahead to the old actor, goes to it in order."""
from __future__ import annotations

from support.backends import started
from support.contract import Renamed, event
from support.timing import PROCESS_HANG

from plugin_service import LifecycleState, PluginHost


def test_a_replacement_runs_the_new_class_in_a_new_actor_with_the_queue_in_order(
        host: PluginHost, gates) -> None:
    svc = started(host, queue_size=16)
    old_class, old_pid, _ = svc.submit(event("whoami")).result(timeout=PROCESS_HANG)
    gate = gates.new()
    held = svc.submit(event("block", gate))  # runs until cancelled
    assert gate.entered()
    queued = [svc.submit(event("whoami", n)) for n in range(8)]  # handed ahead to the actor
    # The bound cancels the held event; what was handed ahead comes back unrun.
    status = host.replace_service("svc", Renamed, timeout=1.0)
    assert status.state is LifecycleState.RUNNING and status.replacements == 1
    after = [svc.submit(event("whoami", n)) for n in range(8, 12)]
    assert held.result(timeout=PROCESS_HANG) == "woke"
    answers = [future.result(timeout=PROCESS_HANG) for future in queued + after]
    assert [n for _cls, _pid, n in answers] == list(range(12))
    assert {(cls, pid) for cls, pid, _n in answers} == {("Renamed", answers[0][1])}
    assert old_class == "OpScripted" and answers[0][1] != old_pid
    counters = svc.status().counters
    assert counters.succeeded == 14 and counters.failed == counters.timed_out == 0
