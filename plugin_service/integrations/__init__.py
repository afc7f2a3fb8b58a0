"""Integrations of plugin_service with the servers that host it.

Each lives in its own module and imports nothing of the server it serves, so
importing one never requires that server to be installed:

* :mod:`plugin_service.integrations.gunicorn`: one host per gunicorn worker.
"""
