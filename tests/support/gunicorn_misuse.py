"""The misuse tests/test_gunicorn.py serves: a host made and started at import.

Under ``gunicorn --preload`` this module is imported in the master, so the host
and its threads live there; each worker only inherits a forked copy of it.
"""
from __future__ import annotations

from webhooks import make_app

from plugin_service import PluginHost
from support.gunicorn_apps import SERVICE, Ledger, _config

host = PluginHost()
host.add_service(SERVICE, Ledger(), _config())
host.start_all(timeout=10)

app = make_app(host, SERVICE)
