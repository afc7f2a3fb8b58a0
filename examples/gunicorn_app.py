"""examples/webhooks.py served by gunicorn's prefork workers, one plugin host each.

A host's threads do not survive a fork, so the host cannot be made at import time
(under ``--preload`` that is in gunicorn's master): ``WorkerHost`` builds one in
each worker after the fork and drains it when the worker exits. Run it from the
``examples`` directory with its config file, which wires the hooks::

    cd examples
    gunicorn -c gunicorn.conf.py gunicorn_app:app
    curl -i -d '{"id": 1, "total": 9.5}' http://127.0.0.1:8000/hooks/orders
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from webhooks import OrderPrinter, WSGIApp, make_app

from plugin_service import PluginHost, ServiceConfig
from plugin_service.integrations.gunicorn import WorkerHost

SERVICE = "webhooks"


def build_host() -> PluginHost:
    """A started host for one worker (called by ``hosts.post_fork`` in the worker)."""
    host = PluginHost()
    host.add_service(SERVICE, OrderPrinter, ServiceConfig(queue_size=100, fail_after=None))
    host.start_all(timeout=5)
    return host


hosts = WorkerHost(build_host)


@functools.lru_cache(maxsize=None)
def _app_for(host: PluginHost) -> WSGIApp:
    return make_app(host, SERVICE)


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The WSGI app gunicorn serves: the webhooks app of this worker's host."""
    return _app_for(hosts.host)(environ, start_response)
