"""Behaviour the service core's split into a package first changed, each found
by a review of the split and pinned here (every test failed on that first cut)."""
from __future__ import annotations

import threading

from loguru import logger
from support.timing import HANG

from plugin_service import (
    Ingress,
    IngressEvent,
    LifecycleState,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    errors,
)
from plugin_service._events import check_event

FAILED = LifecycleState.FAILED


def _event() -> IngressEvent:
    return IngressEvent("in", "test", None)


class ReportsItsCrash(ServicePlugin):
    """A thread plugin whose handler says its own backend died (it drives a
    process of its own, say) with the public ``errors.PluginCrashed``."""

    ingresses = (Ingress("in"),)

    def __init__(self) -> None:
        self.cleaned = threading.Event()

    def handle_ingress(self, event, ctx):
        raise errors.PluginCrashed("the subprocess died", service="crashy")

    def on_failure(self, diagnostic) -> None:
        self.cleaned.set()


def test_a_thread_plugin_raising_plugin_crashed_fails_the_service_at_once() -> None:
    plugin = ReportsItsCrash()
    with PluginHost() as host:
        handle = host.add_service("crashy", plugin, ServiceConfig(fail_after=None))
        handle.start(timeout=HANG)
        error = handle.submit(_event()).exception(timeout=HANG)
        assert isinstance(error, errors.DispatchFailed)
        assert handle.wait_for(FAILED, timeout=HANG), handle.status()
        assert not plugin.cleaned.is_set()  # a crashed plugin is not cleaned up


class WithoutHandler:
    """What a factory builds: start() and stop(), but no handle_ingress (a
    factory's product is not checked when the service is added)."""

    def __init__(self, stopped: threading.Event) -> None:
        self._stopped = stopped

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self._stopped.set()


def test_a_plugin_without_a_handler_runs_then_its_worker_fails_and_stops_it() -> None:
    stopped = threading.Event()
    with PluginHost() as host:
        handle = host.add_service("nohandler", lambda: WithoutHandler(stopped))
        try:
            handle.start(timeout=HANG)
        except errors.ServiceFailed:
            pass  # the worker's crash may be seen before start() returns
        assert handle.wait_for(FAILED, timeout=HANG)
        failure = handle.status().failure
        assert failure is not None
        assert failure.message.startswith("worker crashed: AttributeError"), failure.message
        assert stopped.wait(HANG), "the started plugin was never stopped"
        assert any(d.message == "starting -> running" for d in handle.status().diagnostics)


class HostileName(str):
    def __hash__(self) -> int:
        raise RuntimeError("boom")


def test_an_event_that_cannot_be_checked_is_told_with_the_exceptions_repr() -> None:
    event = IngressEvent(HostileName("in"), "test", None)
    assert check_event(event, {"in": Ingress("in")}) == \
        "event could not be checked: RuntimeError('boom')"


def test_a_service_handle_still_takes_its_users_attributes() -> None:
    with PluginHost() as host:
        handle = host.add_service("plain", ReportsItsCrash())
        handle.note = "mine"
        assert handle.note == "mine"


def test_every_service_record_is_named_plugin_service_service() -> None:
    names = []
    logger.enable("plugin_service")
    sink = logger.add(lambda message: names.append(message.record["name"]), level="INFO")
    try:
        with PluginHost() as host:
            host.add_service("named", ReportsItsCrash()).start(timeout=HANG)
    finally:
        logger.remove(sink)
    assert names and set(names) == {"plugin_service._service"}, names


def test_a_services_conditions_are_made_like_threading_conditions() -> None:
    """core._Condition skips Condition.__init__'s RLock probes: it must still set
    exactly what that __init__ sets on a plain Lock, or a newer Python's Condition
    would find a field missing."""
    import threading

    from plugin_service._service.core import _Condition

    lock = threading.Lock()
    made, real = _Condition(lock), threading.Condition(lock)
    assert sorted(vars(made)) == sorted(vars(real))
    assert made._lock is lock and made.acquire == lock.acquire
    with made:
        assert not made.wait(0.001) and made._is_owned()
        made.notify_all()
