"""The WSGI app that tests/test_gunicorn.py serves with a real gunicorn.

Imported in gunicorn's processes as ``support.gunicorn_apps`` (``PYTHONPATH`` holds
``tests`` and ``examples``), never by pytest itself. Every handled event appends
``<pid> <correlation id>`` to the file named by ``PLUGIN_SERVICE_TEST_LEDGER`` with
one ``O_APPEND`` write, so the lines of both workers interleave whole.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Any

from webhooks import make_app

from plugin_service import (
    DispatchContext,
    Ingress,
    IngressEvent,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
)
from plugin_service.integrations.gunicorn import WorkerHost

SERVICE = "orders"
#: How long a held handler waits for ``release`` at most: longer than a server's
#: whole life in a test (start-up, requests, stop), so only a worker that never
#: exits ends the wait; it catches a hang only.
HOLD = 60.0

#: Set by the worker_exit hook of gunicorn_conf.py: until then every handler waits,
#: so every accepted event is still queued (or in flight) when the worker is told
#: to stop, and only the drain can handle it.
release = threading.Event()


def _append(event: IngressEvent) -> None:
    fd = os.open(os.environ["PLUGIN_SERVICE_TEST_LEDGER"],
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, ("%d %s\n" % (os.getpid(), event.correlation_id)).encode("ascii"))
    finally:
        os.close(fd)


class Ledger(ServicePlugin):
    """Appends each event to the ledger once ``hold`` (if any) is released."""

    ingresses = (Ingress("orders"),)

    def __init__(self, hold: "threading.Event | None" = None) -> None:
        self.hold = hold

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> None:
        if self.hold is not None:
            self.hold.wait(HOLD)
        _append(event)


def _config() -> ServiceConfig:
    return ServiceConfig(queue_size=100, dispatch_timeout=None, fail_after=None)


# --------------------------------------------- the supported way: one host per worker
def build_host() -> PluginHost:
    host = PluginHost()
    host.add_service(SERVICE, Ledger(release), _config())
    host.start_all(timeout=10)
    return host


hosts = WorkerHost(build_host)


@functools.lru_cache(maxsize=None)
def _app_for(host: PluginHost) -> Any:
    return make_app(host, SERVICE)


def app(environ: Any, start_response: Any) -> Any:
    """``gunicorn -c support/gunicorn_conf.py support.gunicorn_apps:app``."""
    return _app_for(hosts.host)(environ, start_response)
