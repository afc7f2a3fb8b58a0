"""Prometheus metrics for a host (the ``metrics`` extra: ``pip install plugin_service[metrics]``).

``PluginHostCollector(host)`` reads ``host.status()`` at scrape time, so there is
no second set of counters to keep in step; ``serve_metrics(host, port)`` serves it
on a loopback HTTP endpoint. Importing this module imports ``prometheus_client``.
"""
from ._metrics import MetricsServer, PluginHostCollector, serve_metrics

__all__ = ["PluginHostCollector", "MetricsServer", "serve_metrics"]
