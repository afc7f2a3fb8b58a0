"""Lifecycle listeners on the Ray backend: a service's transitions are made on the
host, whichever process runs its plugin, so listeners hear them as on threads."""
from __future__ import annotations

from support.backends import failure_of, started
from support.contract import event
from support.listeners import Listener
from support.timing import PROCESS_HANG

from plugin_service import PluginHost, RestartPolicy, errors


def test_listeners_hear_a_crash_and_the_restart_in_order_on_the_listener_thread(
        host: PluginHost) -> None:
    heard = Listener()
    host.add_listener(heard)
    svc = started(host, restart=RestartPolicy(max_restarts=1, backoff=0.1))
    assert isinstance(failure_of(svc.submit(event("exit"))).__cause__, errors.PluginCrashed)
    told = heard.take(5, timeout=PROCESS_HANG)  # a fresh actor starts in between
    assert [one.move for one in told] == [
        ("svc", "ready", "starting"), ("svc", "starting", "running"),
        ("svc", "running", "failed"), ("svc", "failed", "starting"),
        ("svc", "starting", "running")]
    (thread,) = {one.thread for one in told}
    assert thread.name.startswith("plugin_service-listeners-")
