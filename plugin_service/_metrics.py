"""Prometheus metrics read from ``host.status()`` at scrape time (the ``metrics`` extra).

Nothing here keeps a counter of its own: every scrape takes one
``host.status()`` snapshot and reports it, so the figures can never drift from
the host's diagnostics. ``prometheus_client`` is imported by this module only,
so importing ``plugin_service`` never needs it.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import attrs
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._diagnostics import DispatchCounters, ToolCounters
from ._host import PluginHost
from ._lifecycle import LifecycleState

__all__ = ["MetricsServer", "PluginHostCollector", "serve_metrics"]

PREFIX = "plugin_service"

_SERVICE_COUNTERS = tuple(f.name for f in attrs.fields(DispatchCounters))
_TOOL_COUNTERS = tuple(f.name for f in attrs.fields(ToolCounters))


class PluginHostCollector:
    """A custom collector: each ``collect()`` reports one ``host.status()`` snapshot.

    Services (label ``service``): ``plugin_service_service_<counter>_total`` for
    every ``DispatchCounters`` field, ``..._restarts_total``, gauges
    ``..._queue_depth``, ``..._queue_capacity``, ``..._in_flight``, ``..._overdue``
    and ``plugin_service_service_state{state=...}`` (1 for the current state, 0
    for the others). Tools (label ``tool``): ``plugin_service_tool_<counter>_total``
    for every ``ToolCounters`` field and the gauges ``plugin_service_tool_in_flight``,
    ``..._overdue`` and ``..._abandoned``.
    ``collect()`` runs on the scraping thread and never blocks on a handler.
    """

    def __init__(self, host: PluginHost) -> None:
        self._host = host

    def collect(self) -> Iterator[Metric]:
        """The metric families of one ``host.status()`` snapshot, taken now."""
        status = self._host.status()
        services = list(status.services.values())
        tools = list(status.tools.values())

        for counter in _SERVICE_COUNTERS:
            family = CounterMetricFamily(
                f"{PREFIX}_service_{counter}",
                "Events {} by the service (DispatchCounters.{}).".format(
                    counter.replace("_", " "), counter),
                labels=["service"])
            for service in services:
                family.add_metric([service.name], getattr(service.counters, counter))
            yield family
        restarts = CounterMetricFamily(f"{PREFIX}_service_restarts",
                                       "Automatic and manual restarts of the service.",
                                       labels=["service"])
        for service in services:
            restarts.add_metric([service.name], service.restarts)
        yield restarts

        gauges = (("queue_depth", "Events waiting in the service's ingress queue."),
                  ("queue_capacity", "Capacity of the service's ingress queue."),
                  ("in_flight", "Events being handled right now (0 or 1)."),
                  ("overdue", "1 while a timed-out handler has not returned yet."))
        for field, documentation in gauges:
            gauge = GaugeMetricFamily(f"{PREFIX}_service_{field}", documentation,
                                      labels=["service"])
            for service in services:
                gauge.add_metric([service.name], float(getattr(service, field)))
            yield gauge

        state = GaugeMetricFamily(f"{PREFIX}_service_state",
                                  "1 for the service's current lifecycle state, else 0.",
                                  labels=["service", "state"])
        for service in services:
            for candidate in LifecycleState:
                state.add_metric([service.name, candidate.value],
                                 1.0 if service.state is candidate else 0.0)
        yield state

        for counter in _TOOL_COUNTERS:
            family = CounterMetricFamily(
                f"{PREFIX}_tool_{counter}",
                "Tool calls {} (ToolCounters.{}).".format(counter.replace("_", " "), counter),
                labels=["tool"])
            for tool in tools:
                family.add_metric([tool.name], getattr(tool.counters, counter))
            yield family
        tool_gauges = (
            ("in_flight", "Admitted calls without an outcome yet (waiting or running)."),
            ("overdue", "Timed-out or abandoned calls whose thread is still in the tool."),
            ("abandoned", "Calls close() left behind, still running past their bound."))
        for field, documentation in tool_gauges:
            gauge = GaugeMetricFamily(f"{PREFIX}_tool_{field}", documentation,
                                      labels=["tool"])
            for tool in tools:
                gauge.add_metric([tool.name], float(getattr(tool, field)))
            yield gauge


@attrs.define
class MetricsServer:
    """A running metrics endpoint: ``url`` to scrape, :meth:`close` to stop it."""

    host: str
    port: int
    registry: CollectorRegistry
    _server: WSGIServer | None = attrs.field(repr=False)
    _thread: threading.Thread | None = attrs.field(repr=False)

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and close the listening socket. Idempotent."""
        server = self._server
        if server is None:
            return
        self._server = None
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()


def serve_metrics(host: PluginHost, port: int, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve ``host``'s metrics over HTTP on ``addr:port`` (``port=0`` picks a free
    port; read it from the result) from a daemon thread.

    The collector is registered in a fresh ``CollectorRegistry``, so nothing else
    (process or platform metrics, other hosts) shows up. Raises ``OSError`` when the
    port cannot be bound.
    """
    registry = CollectorRegistry()
    registry.register(PluginHostCollector(host))
    server, thread = start_http_server(port, addr=addr, registry=registry)
    bound_port = int(server.server_address[1])
    return MetricsServer(addr, bound_port, registry, server, thread)
