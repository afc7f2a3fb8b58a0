"""Prometheus metrics read from ``host.status()`` at scrape time (the ``metrics`` extra).

Nothing here keeps a counter of its own: every scrape takes one
``host.status()`` snapshot and reports it, so the figures can never drift from
the host's diagnostics. ``prometheus_client`` is imported by this module only,
so importing ``plugin_service`` never needs it.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any, List, Optional, Sequence, Tuple
from wsgiref.simple_server import WSGIServer

import attrs
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from . import __version__
from ._breaker import BreakerState
from ._diagnostics import REJECTION_REASONS, DispatchCounters, HostStatus, ToolCounters
from ._host import PluginHost
from ._latency import LatencyHistogram
from ._lifecycle import LifecycleState
from ._sources import SourceState

__all__ = ["MetricsServer", "PluginHostCollector", "serve_metrics"]

PREFIX = "plugin_service"

_SERVICE_COUNTERS = tuple(f.name for f in attrs.fields(DispatchCounters))
_TOOL_COUNTERS = tuple(f.name for f in attrs.fields(ToolCounters))
_SERVICE_GAUGES = (("queue_depth", "Events waiting in the service's ingress queue."),
                   ("queue_capacity", "Capacity of the service's ingress queue."),
                   ("in_flight", "Events being handled right now (0 or 1)."),
                   ("overdue", "1 while a timed-out handler has not returned yet."))
_TOOL_GAUGES = (("in_flight", "Admitted calls without an outcome yet (waiting or running)."),
                ("overdue", "Timed-out or abandoned calls whose thread is still in the tool."),
                ("abandoned", "Calls close() left behind, still running past their bound."))
_SERVICE_HISTOGRAMS = (
    ("queue_wait", "queue_wait_seconds",
     "Seconds from an event's acceptance until its handler was invoked."),
    ("handler_time", "handler_seconds",
     "Seconds from a handler's invocation until the event's outcome, retries included."))
# The label names the collector's own series use, which const labels may not take.
_OWN_LABELS = frozenset({"service", "tool", "source", "state", "reason", "version", "le",
                         "quantile"})
_SOURCE_COUNTERS = (("received", "Items the source read."),
                    ("submitted", "Events the source queued to its service."),
                    ("rejected", "Items refused: to_event raised or the event was invalid."),
                    ("dropped", "Items read but never submitted (overflow, stop, close)."),
                    ("reconnects", "Connects after a failure."))
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_Snapshot = Tuple[List[str], HostStatus]  # a host's label values, its status


def _label_set(labels: Optional[Mapping[str, str]]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The names and values of const labels, in name order; ``ValueError`` for a
    name Prometheus refuses or the collector uses, ``TypeError`` for a value that
    is not a str."""
    items = sorted((labels or {}).items())
    for name, value in items:
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            raise ValueError("%r is not a Prometheus label name" % (name,))
        if name in _OWN_LABELS:
            raise ValueError("label %r is one the collector's series use already" % name)
        if not isinstance(value, str):
            raise TypeError("label %r: a label value is a str, got %r" % (name, value))
    return tuple(name for name, _ in items), tuple(value for _, value in items)


class PluginHostCollector:
    """A custom collector: each ``collect()`` reports one ``host.status()`` snapshot
    of each host it reports (see the README's Metrics for every family).

    ``labels`` are const labels added to every series of ``host``, for example
    ``{"host": "api"}``. One registry cannot hold two collectors (their families
    have the same names, and a family split between collectors is an exposition
    scrapers refuse): report more hosts from one collector with :meth:`add_host`.
    ``collect()`` runs on the scraping thread and never blocks on a handler.
    """

    def __init__(self, host: PluginHost, *, labels: Optional[Mapping[str, str]] = None
                 ) -> None:
        names, values = _label_set(labels)
        self._label_names = names
        self._hosts: Tuple[Tuple[PluginHost, Tuple[str, ...]], ...] = ((host, values),)
        self._adding = threading.Lock()

    def add_host(self, host: PluginHost, *, labels: Mapping[str, str]) -> None:
        """Report ``host`` too. Its ``labels`` have the names every host of this
        collector was given and values that tell it apart from them, else
        ``ValueError``; a scrape taken meanwhile reports it or not, never half."""
        names, values = _label_set(labels)
        with self._adding:
            if not names or names != self._label_names:
                raise ValueError(
                    "every host of one collector needs labels with the same names, "
                    "here %s: PluginHostCollector(host, labels={'host': 'a'}) then "
                    "add_host(other, labels={'host': 'b'})" % (list(self._label_names),))
            for known, known_values in self._hosts:
                if known is host or known_values == values:
                    raise ValueError("labels %r: that host, or those labels, are "
                                     "reported already" % (dict(labels),))
            self._hosts += ((host, values),)

    def describe(self) -> Iterator[Metric]:
        """The families without samples: what a registry checks names against."""
        return self._families([])

    def collect(self) -> Iterator[Metric]:
        """The metric families of one ``host.status()`` snapshot per host, taken now."""
        return self._families([(list(values), host.status()) for host, values in self._hosts])

    def _families(self, snapshots: Sequence[_Snapshot]) -> Iterator[Metric]:
        names = list(self._label_names)
        info = InfoMetricFamily(PREFIX, "The plugin_service library's version.", labels=names)
        for values, _status in snapshots:
            info.add_metric(values, {"version": __version__})
        yield info
        yield from _service_families(names, snapshots)
        yield from _tool_families(names, snapshots)
        yield from _source_families(names, snapshots)


def _counter_families(what: str, counters: Sequence[str], documentation: str,
                      labels: List[str], rows: List[Any]) -> Iterator[Metric]:
    """A counter family per field of ``counters`` (a services' or tools' status
    ``.counters``), one sample per ``(label values, status)`` row."""
    for counter in counters:
        family = CounterMetricFamily(
            f"{PREFIX}_{what}_{counter}",
            documentation.format(counter.replace("_", " "), counter), labels=labels)
        for key, status in rows:
            family.add_metric(key, getattr(status.counters, counter))
        yield family


def _service_families(names: List[str], snapshots: Sequence[_Snapshot]) -> Iterator[Metric]:
    services = [(values + [service.name], service)
                for values, status in snapshots for service in status.services.values()]
    labels = names + ["service"]
    yield from _counter_families("service", _SERVICE_COUNTERS,
                                 "Events {} by the service (DispatchCounters.{}).",
                                 labels, services)
    restarts = CounterMetricFamily(f"{PREFIX}_service_restarts",
                                   "Automatic and manual restarts of the service.",
                                   labels=labels)
    for key, service in services:
        restarts.add_metric(key, service.restarts)
    yield restarts
    for field, documentation in _SERVICE_GAUGES:
        gauge = GaugeMetricFamily(f"{PREFIX}_service_{field}", documentation, labels=labels)
        for key, service in services:
            gauge.add_metric(key, float(getattr(service, field)))
        yield gauge
    state = GaugeMetricFamily(f"{PREFIX}_service_state",
                              "1 for the service's current lifecycle state, else 0.",
                              labels=labels + ["state"])
    for key, service in services:
        for candidate in LifecycleState:
            state.add_metric(key + [candidate.value],
                             1.0 if service.state is candidate else 0.0)
    yield state
    rejected = CounterMetricFamily(
        f"{PREFIX}_service_rejected_by_reason",
        "Events submit refused, by the kind of error it raised (they sum to rejected).",
        labels=labels + ["reason"])
    for key, service in services:
        counts = service.rejections
        for reason in REJECTION_REASONS + tuple(k for k in counts if k not in REJECTION_REASONS):
            rejected.add_metric(key + [str(reason)], counts.get(reason, 0))
    yield rejected
    for field, name, documentation in _SERVICE_HISTOGRAMS:
        yield _histogram(f"{PREFIX}_service_{name}", documentation, labels,
                         [(key, getattr(service, field)) for key, service in services])
    yield from _breaker_families("service", labels, services)


def _tool_families(names: List[str], snapshots: Sequence[_Snapshot]) -> Iterator[Metric]:
    tools = [(values + [tool.name], tool)
             for values, status in snapshots for tool in status.tools.values()]
    labels = names + ["tool"]
    yield from _counter_families("tool", _TOOL_COUNTERS, "Tool calls {} (ToolCounters.{}).",
                                 labels, tools)
    for field, documentation in _TOOL_GAUGES:
        gauge = GaugeMetricFamily(f"{PREFIX}_tool_{field}", documentation, labels=labels)
        for key, tool in tools:
            gauge.add_metric(key, float(getattr(tool, field)))
        yield gauge
    yield _histogram(f"{PREFIX}_tool_call_seconds",
                     "Seconds from a call's admission until its outcome.", labels,
                     [(key, tool.call_time) for key, tool in tools])
    yield from _breaker_families("tool", labels, tools)


def _breaker_families(what: str, labels: List[str], rows: List[Any]) -> Iterator[Metric]:
    """The breaker's state and trips, for each service (or tool) that has one."""
    state = GaugeMetricFamily(f"{PREFIX}_{what}_breaker_state",
                              "1 for the circuit breaker's current state, else 0.",
                              labels=labels + ["state"])
    trips = CounterMetricFamily(f"{PREFIX}_{what}_breaker_trips",
                                "Times the circuit breaker opened.", labels=labels)
    for key, status in rows:
        breaker = status.breaker
        if breaker is None:
            continue
        for candidate in BreakerState:
            state.add_metric(key + [candidate.value], 1.0 if breaker.state is candidate else 0.0)
        trips.add_metric(key, breaker.trips)
    yield state
    yield trips


def _source_families(names: List[str], snapshots: Sequence[_Snapshot]) -> Iterator[Metric]:
    sources = [(values + [source.name, source.service], source)
               for values, status in snapshots for source in status.sources.values()]
    labels = names + ["source", "service"]
    for counter, documentation in _SOURCE_COUNTERS:
        family = CounterMetricFamily(f"{PREFIX}_source_{counter}", documentation,
                                     labels=labels)
        for key, source in sources:
            family.add_metric(key, getattr(source, counter))
        yield family
    state = GaugeMetricFamily(f"{PREFIX}_source_state",
                              "1 for the source's current state, else 0.",
                              labels=labels + ["state"])
    for key, source in sources:
        for candidate in SourceState:
            state.add_metric(key + [candidate.value], 1.0 if source.state is candidate else 0.0)
    yield state


def _histogram(name: str, documentation: str, labels: List[str],
               series: Sequence[Tuple[List[str], Optional[LatencyHistogram]]]) -> Metric:
    """One histogram family; a series whose histogram is None (not kept) is left out."""
    family = HistogramMetricFamily(name, documentation, labels=labels, unit="seconds")
    for key, histogram in series:
        if histogram is None:
            continue
        # repr() writes every bound as Prometheus's own clients do ("0.0001", "1.0").
        buckets: List[Any] = [(repr(bound), count) for bound, count in histogram.buckets]
        buckets.append(("+Inf", histogram.count))
        family.add_metric(key, buckets, histogram.sum)
    return family


@attrs.define
class MetricsServer:
    """A running metrics endpoint: ``url`` to scrape, :meth:`close` to stop it."""

    host: str
    port: int
    registry: CollectorRegistry
    _server: WSGIServer | None = attrs.field(repr=False)
    _thread: threading.Thread | None = attrs.field(repr=False)
    #: The collector it serves (``collector.add_host`` adds a host to the endpoint).
    collector: Optional[PluginHostCollector] = attrs.field(default=None, repr=False)

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


def serve_metrics(host: PluginHost, port: int, addr: str = "127.0.0.1", *,
                  labels: Optional[Mapping[str, str]] = None) -> MetricsServer:
    """Serve ``host``'s metrics over HTTP on ``addr:port`` (``port=0`` picks a free
    port; read it from the result) from a daemon thread.

    The collector (``labels``: const labels on every series, as for
    :class:`PluginHostCollector`) is registered in a fresh ``CollectorRegistry``,
    so nothing else (process or platform metrics) shows up; ``collector.add_host``
    on the result adds another host. Raises ``OSError`` when the port cannot be
    bound, ``ValueError``/``TypeError`` for labels Prometheus refuses.
    """
    collector = PluginHostCollector(host, labels=labels)
    registry = CollectorRegistry()
    registry.register(collector)
    server, thread = start_http_server(port, addr=addr, registry=registry)
    bound_port = int(server.server_address[1])
    return MetricsServer(addr, bound_port, registry, server, thread, collector)
