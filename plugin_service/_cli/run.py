"""``plugin-service run``: the host of the command line (with its Ray backend and
metrics endpoint when asked), fed from stdin, drained, and the exit code."""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from .. import errors
from .._config import ServiceConfig
from .._guarded import describe
from .._host import PluginHost
from .._lifecycle import LifecycleState
from .._ray import RayBackend
from .feed import _Runner
from .parser import _UsageError
from .signals import _signal_drain, _StatusReporter, _write_status
from .sources import attach_sources
from .specs import _add_plugins
from .streams import _Stream

if TYPE_CHECKING:
    from .._metrics import MetricsServer  # prometheus_client: only when --metrics-port


def _serve_metrics(host: PluginHost, args: argparse.Namespace,
                   stderr: _Stream) -> MetricsServer:
    """The metrics endpoint of ``--metrics-port``; its URL goes to stderr as JSON."""
    try:
        from .._metrics import serve_metrics
    except ImportError:
        raise _UsageError("--metrics-port needs prometheus_client: "
                          "pip install 'plugin_service[metrics]'") from None
    try:
        server = serve_metrics(host, args.metrics_port, args.metrics_addr)
    except OSError as exc:
        raise _UsageError(f"cannot serve metrics on {args.metrics_addr}:"
                          f"{args.metrics_port}: {exc}") from None
    stderr.write_line(json.dumps({"metrics": server.url}))
    return server


def _backend(args: argparse.Namespace) -> RayBackend | None:
    """The backend of ``--ray [ADDRESS]`` ("": a local instance), or None for threads."""
    if args.ray is None:
        return None
    if importlib.util.find_spec("ray") is None:
        raise _UsageError("--ray needs Ray: pip install 'plugin_service[ray]'")
    # Ray logs its start-up at INFO on the driver; the command stays quiet on stderr
    # unless -v asks for logs.
    quiet = {} if args.log_level is not None else {"logging_level": logging.ERROR}
    return RayBackend(address=args.ray or None, init_options=quiet)


def _start_ray(backend: RayBackend, address: str) -> None:
    """Start (or join) Ray now, on the main thread, before any plugin is added: Ray
    that cannot start is a usage error on stderr, not a traceback out of the first
    ``add_service``."""
    try:
        backend._ray()
    except Exception as exc:  # a cluster that is down, a broken installation...
        where = f"at {address}" if address else "locally"
        raise _UsageError(f"cannot start Ray {where}: {describe(exc)}") from None


def _open_host(args: argparse.Namespace, stderr: _Stream
               ) -> tuple[PluginHost, MetricsServer | None, list[str]]:
    """The host with the plugins of the command line, started, its metrics, and the
    services that failed to start."""
    # Served metrics include the latency histograms; without them, nobody reads them.
    config = ServiceConfig(queue_size=args.queue_size, dispatch_timeout=args.dispatch_timeout,
                           fail_after=args.fail_after, stop_timeout=args.stop_timeout,
                           cancel_grace=args.cancel_grace, stack_after=args.stack_after,
                           latency_histograms=args.metrics_port is not None)
    metrics: MetricsServer | None = None
    # --cancel-grace is also what a stuck tool gets once close() cancels it.
    host = PluginHost(backend=_backend(args), tool_cancel_grace=args.cancel_grace)
    not_started: list[str] = []
    try:
        if host.backend is not None:
            _start_ray(host.backend, args.ray)
        _add_plugins(host, args, config, stderr)
        attach_sources(host, args)
        if args.metrics_port is not None:
            metrics = _serve_metrics(host, args, stderr)
        try:
            host.start_all()
        except errors.ServiceFailed as exc:  # the others run; its events are rejected
            stderr.write_line(f"plugin-service: warning: {exc}")
            not_started = list(getattr(exc, "services", None) or ())
    except BaseException:
        host.close()
        if metrics is not None:
            metrics.close()
        raise
    return host, metrics, not_started


def _run(args: argparse.Namespace, stdin: TextIO | None, stdout: _Stream,
         stderr: _Stream) -> int:
    """``plugin-service run``: host, feed stdin, drain, report; returns the exit code."""
    host, metrics, not_started = _open_host(args, stderr)
    runner = _Runner(host, stdout, args.submit_timeout, args.max_line_bytes)
    reporter = _StatusReporter(host, stderr)
    services = [handle.name for handle in host.services()]
    nothing_runs = bool(services) and sorted(not_started) == sorted(services) \
        and not host.status().tools
    try:
        # The first stop signal ends the feed; leaving the block closes the host on
        # this thread, draining, and a second signal cuts that drain short.
        with _signal_drain(host, args, stderr, reporter) as stop:
            if nothing_runs:
                stderr.write_line("plugin-service: error: no service could start")
            else:
                runner.feed(stdin, stop)
                logger.info("stopping on {}: draining accepted events", runner.stop_reason)
    finally:
        host.close()  # a no-op after the drain; closes the host if installing failed
        runner.finish(timeout=10.0)
        reporter.close()
        final = _write_status(host, stderr, "exit")
        if metrics is not None:
            metrics.close()
    return _report(args, final, nothing_runs, stderr)


def _report(args: argparse.Namespace, final: dict[str, Any], nothing_runs: bool,
            stderr: _Stream) -> int:
    """The end of a run: the services that ended FAILED named on stderr, ``final``
    written to ``--status-file``; returns the exit code: 1 when ``nothing_runs``, a
    service ended FAILED or the status file cannot be written, else 0."""
    code = 1 if nothing_runs else 0
    failed = sorted(name for name, service in final["services"].items()
                    if service.get("state") == LifecycleState.FAILED.value)
    if failed and not nothing_runs:
        stderr.write_line("plugin-service: error: service(s) ended failed: "
                          + ", ".join(repr(name) for name in failed))
        code = 1
    if args.status_file:
        try:
            with open(args.status_file, "w", encoding="utf-8") as file:
                json.dump(final, file, indent=2)
                file.write("\n")
        except OSError as exc:
            stderr.write_line(f"plugin-service: error: cannot write status file: {exc}")
            return 1
    return code
