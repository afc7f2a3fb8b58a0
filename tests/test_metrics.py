"""The Prometheus collector, scraped over real HTTP on a loopback port.

The host is quiescent at every scrape (a handler held on an Event, nothing else
moving), so a scrape and a ``host.status()`` taken around it must agree exactly.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import plugin_service
from plugin_service import (
    DispatchContext,
    Ingress,
    IngressEvent,
    LifecycleState,
    PluginHost,
    ServiceConfig,
    ServicePlugin,
    ToolContext,
    errors,
)
from plugin_service.metrics import MetricsServer, PluginHostCollector, serve_metrics

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 10.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Held(ServicePlugin):
    """Signals ``entered`` on each event and holds it until ``release`` is set;
    payload "fail" raises, and only dict payloads are valid."""

    ingresses = (Ingress("in", validate=lambda payload: isinstance(payload, dict)),)

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def handle_ingress(self, event: IngressEvent, ctx: DispatchContext) -> Any:
        self.entered.set()
        if event.payload.get("hold"):
            self.release.wait(TIMEOUT)
        if event.payload.get("fail"):
            raise RuntimeError("asked to fail")
        return event.payload


def lookup(request: Any, ctx: ToolContext) -> Any:
    if request == "fail":
        raise KeyError(request)
    return request


def _event(**payload: Any) -> IngressEvent:
    return IngressEvent("in", "test", payload)


def populate(held: Held) -> PluginHost:
    """``busy``: 2 succeeded, 1 failed, 1 rejected (invalid), 1 in flight, 2 queued
    (capacity 8), latency histograms kept; ``idle``: never started, none kept;
    tool ``lookup``: 1 succeeded, 1 failed."""
    host = PluginHost()
    busy = host.add_service("busy", held, ServiceConfig(queue_size=8, fail_after=None,
                                                        latency_histograms=True))
    host.add_service("idle", Held, ServiceConfig(queue_size=3))
    host.add_tool("lookup", lookup)
    busy.start(timeout=TIMEOUT)
    for future in [busy.submit(_event(n=1)), busy.submit(_event(n=2)),
                   busy.submit(_event(fail=True))]:
        future.exception(timeout=TIMEOUT)
    with pytest.raises(errors.InvalidEvent):
        busy.submit(IngressEvent("in", "test", "not a dict"))
    held.entered.clear()
    busy.submit(_event(hold=True))
    assert held.entered.wait(TIMEOUT)
    busy.submit(_event(n=3))
    busy.submit(_event(n=4))
    assert host.call_tool("lookup", "x", timeout=TIMEOUT) == "x"
    with pytest.raises(errors.ToolFailed):
        host.call_tool("lookup", "fail", timeout=TIMEOUT)
    return host


@contextlib.contextmanager
def served() -> Iterator[tuple[PluginHost, Held, MetricsServer]]:
    """A populated host, quiescent (its handler held), and its metrics server."""
    held = Held()
    host = populate(held)
    server = serve_metrics(host, 0)
    try:
        yield host, held, server
    finally:
        server.close()
        held.release.set()
        host.close()


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[PluginHost, Held, MetricsServer]]:
    """One host and server for the tests that only scrape (the server takes up to
    half a second to shut down)."""
    with served() as setup:
        yield setup


@pytest.fixture
def host(shared: tuple[PluginHost, Held, MetricsServer]) -> PluginHost:
    return shared[0]


@pytest.fixture
def server(shared: tuple[PluginHost, Held, MetricsServer]) -> MetricsServer:
    return shared[2]


@pytest.fixture
def own() -> Iterator[tuple[PluginHost, Held, MetricsServer]]:
    """A host and server of its own, for a test that changes them."""
    with served() as setup:
        yield setup


def scrape(server: MetricsServer) -> Samples:
    with urllib.request.urlopen(server.url, timeout=TIMEOUT) as response:
        return samples_of(response.read().decode())


def samples_of(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


SERVICE_COUNTERS: list[str] = ["enqueued", "dispatched", "succeeded", "failed", "timed_out",
                               "rejected", "dropped", "retried"]


def test_server_listens_on_loopback_with_the_port_it_bound(server: MetricsServer) -> None:
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}/metrics"


def test_scrape_reports_every_service_counter_of_host_status(
        host: PluginHost, server: MetricsServer) -> None:
    samples = scrape(server)
    for name, status in host.status().services.items():
        for counter in SERVICE_COUNTERS:
            assert value(samples, f"plugin_service_service_{counter}_total",
                         service=name) == getattr(status.counters, counter), (name, counter)
        assert value(samples, "plugin_service_service_restarts_total",
                     service=name) == status.restarts


def test_scrape_figures_are_the_ones_the_fixture_produced(server: MetricsServer) -> None:
    samples = scrape(server)
    figures = {c: value(samples, f"plugin_service_service_{c}_total", service="busy")
               for c in ("enqueued", "succeeded", "failed", "rejected")}
    assert figures == {"enqueued": 6, "succeeded": 2, "failed": 1, "rejected": 1}


def test_scrape_reports_queue_depth_capacity_and_in_flight(
        host: PluginHost, server: MetricsServer) -> None:
    samples = scrape(server)
    busy = host.status().services["busy"]
    assert (busy.queue_depth, busy.in_flight) == (2, 1)
    assert value(samples, "plugin_service_service_queue_depth", service="busy") == 2
    assert value(samples, "plugin_service_service_queue_capacity", service="busy") == 8
    assert value(samples, "plugin_service_service_in_flight", service="busy") == 1
    assert value(samples, "plugin_service_service_queue_capacity", service="idle") == 3
    assert value(samples, "plugin_service_service_in_flight", service="idle") == 0


def test_scrape_reports_the_current_state_as_one_and_the_others_as_zero(
        server: MetricsServer) -> None:
    samples = scrape(server)
    for service, current in (("busy", "running"), ("idle", "ready")):
        states = {state.value: value(samples, "plugin_service_service_state",
                                     service=service, state=state.value)
                  for state in LifecycleState}
        assert states == {s.value: (1.0 if s.value == current else 0.0)
                          for s in LifecycleState}


def test_scrape_reports_tool_counters_and_in_flight(host: PluginHost,
                                                   server: MetricsServer) -> None:
    samples = scrape(server)
    status = host.status().tools["lookup"]
    for counter in ("calls", "succeeded", "failed", "timed_out", "rejected"):
        assert value(samples, f"plugin_service_tool_{counter}_total",
                     tool="lookup") == getattr(status.counters, counter), counter
    assert (status.counters.succeeded, status.counters.failed) == (1, 1)
    assert value(samples, "plugin_service_tool_in_flight", tool="lookup") == 0


def test_scrape_reads_host_status_at_scrape_time(
        own: tuple[PluginHost, Held, MetricsServer]) -> None:
    host, held, server = own
    before = value(scrape(server), "plugin_service_service_succeeded_total", service="busy")
    held.release.set()
    busy = host.service("busy")
    busy.stop(timeout=TIMEOUT)  # drains the held event and the two queued ones
    after = scrape(server)
    assert before == 2
    assert value(after, "plugin_service_service_succeeded_total", service="busy") == 5
    assert value(after, "plugin_service_service_queue_depth", service="busy") == 0
    assert value(after, "plugin_service_service_state", service="busy", state="stopped") == 1


def test_close_stops_serving(own: tuple[PluginHost, Held, MetricsServer]) -> None:
    server = own[2]
    scrape(server)
    server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=TIMEOUT)


def test_importing_plugin_service_does_not_import_prometheus_client() -> None:
    code = ("import sys, plugin_service, plugin_service._cli; "
            "sys.exit('prometheus_client' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=TIMEOUT,
                          check=False)
    assert done.returncode == 0


# ------------------------------------------------------- rejections by reason
REASONS = ["queue_full", "invalid_event", "service_unavailable", "service_stopped",
           "service_failed"]


def test_scrape_reports_rejections_by_reason_summing_to_rejected(
        host: PluginHost, server: MetricsServer) -> None:
    samples = scrape(server)
    for name, status in host.status().services.items():
        by_reason = {reason: value(samples, "plugin_service_service_rejected_by_reason_total",
                                   service=name, reason=reason) for reason in REASONS}
        assert sum(by_reason.values()) == value(
            samples, "plugin_service_service_rejected_total", service=name)
        assert by_reason == {str(kind): n for kind, n in status.rejections.items()}
    busy = {reason: value(samples, "plugin_service_service_rejected_by_reason_total",
                          service="busy", reason=reason) for reason in REASONS}
    assert busy == {**dict.fromkeys(REASONS, 0), "invalid_event": 1}


def test_back_pressure_is_told_apart_from_client_bugs(
        own: tuple[PluginHost, Held, MetricsServer]) -> None:
    host, _held, server = own
    busy = host.service("busy")
    for n in range(6):  # 2 queued + 6 = the capacity of 8
        busy.submit(_event(n=n))
    with pytest.raises(errors.QueueFull):
        busy.submit(_event(n="one too many"))
    samples = scrape(server)
    reasons = {reason: value(samples, "plugin_service_service_rejected_by_reason_total",
                             service="busy", reason=reason) for reason in REASONS}
    assert (reasons["queue_full"], reasons["invalid_event"]) == (1, 1)
    assert value(samples, "plugin_service_service_rejected_total", service="busy") == 2


# ------------------------------------------------------------------ histograms
def _histogram_samples(samples: Samples, name: str, **labels: str) -> tuple:
    buckets = {dict(key)["le"]: v for (sample, key), v in samples.items()
               if sample == name + "_bucket"
               and {k: x for k, x in dict(key).items() if k != "le"} == labels}
    return buckets, value(samples, name + "_count", **labels), value(samples, name + "_sum",
                                                                      **labels)


def test_scrape_reports_the_latency_histograms_of_host_status(
        host: PluginHost, server: MetricsServer) -> None:
    samples = scrape(server)
    busy = host.status().services["busy"]
    for field, name in (("queue_wait", "plugin_service_service_queue_wait_seconds"),
                        ("handler_time", "plugin_service_service_handler_seconds")):
        histogram = getattr(busy, field)
        assert histogram is not None and histogram.count == 3  # 2 succeeded, 1 failed
        buckets, count, total = _histogram_samples(samples, name, service="busy")
        assert buckets == {**{repr(bound): n for bound, n in histogram.buckets},
                           "+Inf": histogram.count}
        assert (count, total) == (histogram.count, pytest.approx(histogram.sum))
        assert not any(key[0].startswith(name) and ("service", "idle") in key[1]
                       for key in samples), "idle keeps no histograms: no series"
    tool = host.status().tools["lookup"].call_time
    buckets, count, total = _histogram_samples(samples, "plugin_service_tool_call_seconds",
                                               tool="lookup")
    assert count == tool.count == 2 and buckets["+Inf"] == 2
    assert buckets == {**{repr(bound): n for bound, n in tool.buckets}, "+Inf": 2}


# -------------------------------------------------------------- info, labels
def test_scrape_reports_the_version_as_an_info_metric(server: MetricsServer) -> None:
    samples = scrape(server)
    assert value(samples, "plugin_service_info", version=plugin_service.__version__) == 1
    assert [key for key in samples if key[0] == "plugin_service_info"] == [
        ("plugin_service_info", frozenset({("version", plugin_service.__version__)}))]


def _other_host() -> PluginHost:
    """A second host with a service named like the populated one's, 1 succeeded."""
    other = PluginHost()
    busy = other.add_service("busy", Held, ServiceConfig(latency_histograms=True))
    busy.start(timeout=TIMEOUT)
    assert busy.submit(_event(n=1)).result(timeout=TIMEOUT) == {"n": 1}
    return other


def test_two_hosts_share_a_registry_with_a_host_label(host: PluginHost) -> None:
    other = _other_host()
    try:
        collector = PluginHostCollector(host, labels={"host": "first"})
        collector.add_host(other, labels={"host": "second"})
        registry = CollectorRegistry(auto_describe=True)
        registry.register(collector)
        samples = samples_of(generate_latest(registry).decode())
        for name, succeeded in (("first", 2), ("second", 1)):
            assert value(samples, "plugin_service_service_succeeded_total",
                         host=name, service="busy") == succeeded
            assert value(samples, "plugin_service_service_queue_wait_seconds_count",
                         host=name, service="busy") == succeeded + (name == "first")
            assert value(samples, "plugin_service_info", host=name,
                         version=plugin_service.__version__) == 1
        assert value(samples, "plugin_service_tool_calls_total", host="first", tool="lookup") == 2
        assert all(dict(labels).get("host") in ("first", "second") for _, labels in samples)
        # One family per name, as OpenMetrics (which Prometheus asks for) requires.
        families = list(openmetrics_families(generate_openmetrics(registry).decode()))
        names = [family.name for family in families]
        assert len(names) == len(set(names))
    finally:
        other.close()


def test_a_second_collector_in_one_registry_is_refused(host: PluginHost) -> None:
    other = _other_host()
    try:
        registry = CollectorRegistry()
        registry.register(PluginHostCollector(host, labels={"host": "first"}))
        # prometheus_client's DuplicateTimeseries from 0.21 on, a plain ValueError
        # with the same message before (the declared minimum is 0.20).
        with pytest.raises(ValueError, match="Duplicated timeseries in CollectorRegistry"):
            registry.register(PluginHostCollector(other, labels={"host": "second"}))
    finally:
        other.close()


def test_serve_metrics_labels_every_series_and_serves_added_hosts() -> None:
    held = Held()
    host = populate(held)
    other = _other_host()
    server = serve_metrics(host, 0, labels={"host": "first", "zone": "a"})
    try:
        assert server.collector is not None
        server.collector.add_host(other, labels={"host": "second", "zone": "a"})
        samples = scrape(server)
        assert all(dict(labels).get("zone") == "a" for _, labels in samples)
        assert value(samples, "plugin_service_service_enqueued_total",
                     host="first", zone="a", service="busy") == 6
        assert value(samples, "plugin_service_service_enqueued_total",
                     host="second", zone="a", service="busy") == 1
    finally:
        server.close()
        held.release.set()
        other.close()
        host.close()


@pytest.mark.parametrize("labels, error", [
    ({"service": "x"}, ValueError),  # the collector's own label
    ({"le": "x"}, ValueError),
    ({"__host": "x"}, ValueError),  # reserved by Prometheus
    ({"not a name": "x"}, ValueError),
    ({"host": 1}, TypeError),
])
def test_labels_prometheus_would_refuse_are_refused(host: PluginHost, labels: Any,
                                                    error: type) -> None:
    with pytest.raises(error, match="label (name|value|'|\"|.* use)"):
        PluginHostCollector(host, labels=labels)


def test_add_host_needs_the_same_label_names_and_other_values(host: PluginHost) -> None:
    other = _other_host()
    try:
        unlabelled = PluginHostCollector(host)
        with pytest.raises(ValueError):
            unlabelled.add_host(other, labels={"host": "second"})
        collector = PluginHostCollector(host, labels={"host": "first"})
        for labels in ({"host": "first"}, {"zone": "second"},
                       {"host": "second", "zone": "a"}):
            with pytest.raises(ValueError):
                collector.add_host(other, labels=labels)
        with pytest.raises(ValueError):
            collector.add_host(host, labels={"host": "again"})
        collector.add_host(other, labels={"host": "second"})
        hosts = {dict(sample.labels).get("host") for family in collector.collect()
                 for sample in family.samples}
        assert hosts == {"first", "second"}
    finally:
        other.close()
