"""The ``plugin-service`` command line (also ``python -m plugin_service``).

``demo`` runs the demo host; ``run`` hosts plugins, reads JSON-lines events on
stdin and writes one JSON line per outcome on stdout. Only this entry point
configures logging: it removes loguru's default handler, so the command stays
quiet on stderr unless ``-v LEVEL`` asks for ``plugin_service`` logs.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from . import __version__, errors
from ._cli_feed import _MAX_LINE_BYTES, _Runner, _Stream
from ._config import ServiceConfig
from ._demo import run_demo
from ._discovery import DEFAULT_GROUP, classify
from ._host import PluginHost
from ._lifecycle import LifecycleState
from ._ray import RayBackend
from ._signals import _SignalDrain

if TYPE_CHECKING:
    from loguru import Record

    from ._metrics import MetricsServer  # prometheus_client: only when --metrics-port

__all__ = ["build_parser", "main"]

_RUN_EPILOG = """\
input, one JSON object per line (blank lines are skipped):
  {"service": NAME, "ingress": I, "kind": K, "source": S, "payload": P}
      kind defaults to "event", source to "stdin", payload to null; an optional
      "correlation_id" replaces the generated one
  {"tool": NAME, "request": R}

output, one JSON line per input line, in the order outcomes complete:
  {"correlation_id": ..., "service": NAME, "outcome": "succeeded", "result": ..., "line": N}
  {"correlation_id": ..., "service": NAME, "outcome": "rejected",
   "error": {"type": "QueueFull", "kind": "queue_full", "message": ...}, "line": N}
  outcomes: succeeded, failed, timed_out, dropped, rejected; tool lines carry
  "tool" instead of "service"; a malformed line is rejected with type
  MalformedLine (or InvalidEvent, ServiceNotFound, ToolNotFound) and the run
  goes on; so is a line longer than --max-line-bytes, with type LineTooLong.

stopping: end of input, Ctrl-C (SIGINT) or SIGTERM stops reading and drains
every accepted event, each service for up to --stop-timeout, then a running
handler is cancelled and gets --cancel-grace. A second Ctrl-C or SIGTERM stops
now: queued events are answered as dropped. SIGUSR1 writes
{"status": {...}, "reason": "SIGUSR1"} as one line to stderr; the final status
is written the same way at exit ("reason": "exit").

exit status: 0 when every service stopped cleanly; 1 when a service ended
FAILED or no service could start; 2 for a command line that cannot run (bad
option, plugin that cannot be loaded, nothing to host).
"""


# ---------------------------------------------------------------- logging
def _log_level(text: str) -> str | int:
    """argparse type of ``--log-level``: a loguru level name (any case) or number."""
    if text.isdigit():
        return int(text)
    try:
        return logger.level(text.upper()).name
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown log level {text!r} "
            "(TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL)") from None


def _log_format(record: Record) -> str:
    extra = "".join(f"{key}={{extra[{key}]}} " for key, value in record["extra"].items()
                    if value is not None)
    return ("{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name} | " + extra
            + "{message}\n{exception}")


def _configure_logging(level: str | int | None, stderr: _Stream) -> None:
    """Quiet by default; with ``level``, plugin_service logs go to stderr."""
    logger.remove()
    if level is not None:
        logger.add(stderr.write_line, level=level, format=_log_format, colorize=False)
        logger.enable("plugin_service")


# ------------------------------------------------------------------ parser
# argparse names a type function that raises ValueError in its message ("invalid
# _seconds value"); these raise ArgumentTypeError themselves, with words for a person.
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count: {text!r} (an integer >= 1)")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r} "
                                         "(a number >= 0)")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port: {text!r} (0-65535)")
    return value


def _add_log_level(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-v", "--log-level", metavar="LEVEL", type=_log_level,
                        default=default,
                        help="log plugin_service at LEVEL (e.g. DEBUG, INFO) to stderr; "
                             "without it the command is quiet on stderr")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``plugin-service``."""
    parser = argparse.ArgumentParser(
        prog="plugin-service",
        description="Host service and tool plugins on threads. "
                    "Without a command, runs the demo.")
    _add_log_level(parser, None)
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    parser.set_defaults(command=None, seconds=3.0)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run the demo host with the example plugins",
        description="Host the example plugins (the 'words' service and the 'frequency' "
                    "tool), feed them events while a status line refreshes, then print "
                    "the final status table.")
    demo.add_argument("--seconds", metavar="N", type=_seconds, default=3.0,
                      help="how long to feed events (default: 3)")

    run = commands.add_parser(
        "run", help="host plugins and feed them JSON-lines events from stdin",
        description="Host plugins named as module:attr (or name=module:attr), or found "
                    "through an entry-point group, and feed them the JSON-lines events "
                    "read from stdin.",
        epilog=_RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    # -v also after the command; SUPPRESS keeps a level given before it.
    for command in (demo, run):
        _add_log_level(command, argparse.SUPPRESS)
    run.add_argument("specs", nargs="*", metavar="SPEC",
                     help="a plugin as module:attr or name=module:attr; a ServicePlugin "
                          "subclass becomes a service named after attr (lower-cased), a "
                          "ToolPlugin or callable a tool")
    run.add_argument("--group", action="append", default=[], metavar="GROUP",
                     help="also load the plugins of entry-point group GROUP (repeatable; "
                          f"default without SPEC: {DEFAULT_GROUP})")
    run.add_argument("--metrics-port", metavar="PORT", type=_port,
                     help="serve Prometheus metrics on 127.0.0.1:PORT (0: a free port); "
                          "needs the 'metrics' extra")
    run.add_argument("--metrics-addr", metavar="ADDR", default="127.0.0.1",
                     help="address of the metrics endpoint (default: 127.0.0.1)")
    run.add_argument("--queue-size", metavar="N", type=_positive_int, default=32,
                     help="ingress queue capacity of each service (default: 32)")
    run.add_argument("--dispatch-timeout", metavar="S", type=_seconds, default=30.0,
                     help="bound on each event's handler and each tool call (default: 30)")
    run.add_argument("--fail-after", metavar="N", type=_positive_int, default=None,
                     help="fail a service after N consecutive failed events "
                          "(default: never, each event fails alone)")
    run.add_argument("--submit-timeout", metavar="S", type=_seconds, default=5.0,
                     help="how long a line waits for room in a full queue before it is "
                          "rejected with QueueFull (default: 5)")
    run.add_argument("--stop-timeout", metavar="S", type=_seconds, default=30.0,
                     help="on stop, how long each service may drain its queue before "
                          "what is left is dropped and a running handler cancelled "
                          "(default: 30)")
    run.add_argument("--cancel-grace", metavar="S", type=_seconds, default=5.0,
                     help="how long a cancelled handler may take to return before its "
                          "service is failed (default: 5)")
    run.add_argument("--max-line-bytes", metavar="N", type=_positive_int,
                     default=_MAX_LINE_BYTES,
                     help="longest input line; a longer one is rejected with LineTooLong "
                          f"and skipped (default: {_MAX_LINE_BYTES}, 1 MiB)")
    run.add_argument("--status-file", metavar="PATH",
                     help="also write the final status as JSON to PATH")
    run.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="run each service as a Ray actor: in a local Ray instance on "
                          "127.0.0.1 without ADDRESS, else in the cluster at ADDRESS "
                          "(host:port); needs the 'ray' extra")
    return parser


# ------------------------------------------------------------------ plugins
class _UsageError(Exception):
    """A command line that cannot run: reported on stderr with exit code 2."""


def _import_spec(spec: str) -> tuple[str, str, Any]:
    """``(name, "service" | "tool", plugin)`` for ``module:attr`` or ``name=module:attr``."""
    name: str | None = None
    target = spec
    head, sep, rest = spec.partition("=")
    if sep and ":" not in head:
        name, target = head.strip(), rest
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"plugin spec {spec!r} is not module:attr or name=module:attr")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # importing a user's module may raise anything
        raise _UsageError(f"cannot load plugin {spec!r}: {type(exc).__name__}: {exc}") from None
    try:
        what, plugin = classify(obj)
    except TypeError as exc:
        raise _UsageError(f"plugin {spec!r}: {exc}") from None
    return name or attr.split(".")[-1].lower(), what, plugin


def _add_plugins(host: PluginHost, args: argparse.Namespace, config: ServiceConfig,
                 stderr: _Stream) -> None:
    if args.specs and "" not in sys.path and os.getcwd() not in sys.path:
        # As with ``python -m`` (and uvicorn, gunicorn): modules of the current
        # directory can be named, even from the ``plugin-service`` script.
        sys.path.insert(0, os.getcwd())
    for spec in args.specs:
        name, what, plugin = _import_spec(spec)
        try:
            if what == "service":
                host.add_service(name, plugin, config)
            else:
                host.add_tool(name, plugin, timeout=args.dispatch_timeout)
        except (TypeError, ValueError) as exc:
            raise _UsageError(f"plugin {spec!r}: {exc}") from None
    groups = args.group or ([] if args.specs else [DEFAULT_GROUP])
    for group in groups:
        report = host.load_entry_points(group, config=config)
        for name, error in report.errors.items():
            stderr.write_line(f"plugin-service: warning: entry point {name!r} of group "
                              f"{group!r} not loaded: {error.reason}")
    status = host.status()
    if not status.services and not status.tools:
        searched = " / ".join(groups or [DEFAULT_GROUP])
        raise _UsageError("no plugins to host: name them as module:attr or install "
                          f"plugins in the entry-point group {searched}")


# --------------------------------------------------------------------- run
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_STATUS_SIGNAL: int | None = getattr(signal, "SIGUSR1", None)  # none on Windows


def _write_status(host: PluginHost, stderr: _Stream, reason: str) -> dict[str, Any]:
    """One ``{"status": ..., "reason": ...}`` line on stderr; returns the status."""
    snapshot: dict[str, Any] = host.status().to_dict()
    stderr.write_line(json.dumps({"status": snapshot, "reason": reason}))
    return snapshot


class _StatusReporter:
    """Writes status lines to stderr from its own thread, on request.

    :meth:`request` only puts on a ``SimpleQueue``, which is safe in a signal
    handler; the snapshot is taken on the reporter thread, never inside the
    handler, which could otherwise wait on a lock its own thread holds.
    """

    def __init__(self, host: PluginHost, stderr: _Stream) -> None:
        self._host = host
        self._stderr = stderr
        self._requests: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="plugin-service-status",
                                        daemon=True)
        self._thread.start()

    def request(self, reason: str) -> None:
        self._requests.put(reason)

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while True:
            reason = self._requests.get()
            if reason is None:
                return
            _write_status(self._host, self._stderr, reason)


def _serve_metrics(host: PluginHost, args: argparse.Namespace,
                   stderr: _Stream) -> MetricsServer:
    """The metrics endpoint of ``--metrics-port``; its URL goes to stderr as JSON."""
    try:
        from ._metrics import serve_metrics
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


def _take_back_spec(args: argparse.Namespace) -> None:
    """``--ray module:attr``: argparse took the plugin spec for the optional ADDRESS.

    A Ray address is ``host:port`` (digits after the last colon) or has no colon
    (``auto``); anything else with a colon is a plugin spec, so the run uses a local
    instance and hosts that plugin.
    """
    value = args.ray
    if value and ":" in value and not value.rpartition(":")[2].isdigit():
        args.specs.insert(0, value)
        args.ray = ""


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
        raise _UsageError(f"cannot start Ray {where}: {type(exc).__name__}: {exc}") from None


def _open_host(args: argparse.Namespace, stderr: _Stream
               ) -> tuple[PluginHost, MetricsServer | None, list[str]]:
    """The host with the plugins of the command line, started, its metrics, and the
    services that failed to start."""
    config = ServiceConfig(queue_size=args.queue_size, dispatch_timeout=args.dispatch_timeout,
                           fail_after=args.fail_after, stop_timeout=args.stop_timeout,
                           cancel_grace=args.cancel_grace)
    metrics: MetricsServer | None = None
    # --cancel-grace is also what a stuck tool gets once close() cancels it.
    host = PluginHost(backend=_backend(args), tool_cancel_grace=args.cancel_grace)
    not_started: list[str] = []
    try:
        if host.backend is not None:
            _start_ray(host.backend, args.ray)
        _add_plugins(host, args, config, stderr)
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


def _announce(args: argparse.Namespace, stderr: _Stream) -> Callable[[str, bool], None]:
    """What the run says on stderr when a stop signal arrives (on the signal thread)."""
    def bound(seconds: float | None, option: str) -> str:
        return f"no bound ({option})" if seconds is None else f"{seconds:g}s ({option})"

    def announce(name: str, forced: bool) -> None:
        if forced:
            stderr.write_line(f"plugin-service: {name} again: stopping now; queued events "
                              "are dropped, running handlers cancelled (they get "
                              f"{bound(args.cancel_grace, '--cancel-grace')} to return)")
        else:
            stderr.write_line(f"plugin-service: {name}: draining accepted events: up to "
                              f"{bound(args.stop_timeout, '--stop-timeout')} + "
                              f"{bound(args.cancel_grace, '--cancel-grace')}; press Ctrl-C "
                              "again (or send the signal again) to stop now")
    return announce


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
        with _SignalDrain(host, timeout=None, signals=_STOP_SIGNALS,
                          on_signal=_announce(args, stderr),
                          also={} if _STATUS_SIGNAL is None
                          else {_STATUS_SIGNAL: reporter.request}) as stop:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``plugin-service`` with ``argv`` (default: ``sys.argv[1:]``); returns the
    exit code: 0; 1 when a service ended FAILED or none could start; 2 for a command
    line that cannot run (usage, plugin loading)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stdout, stderr = _Stream(sys.stdout), _Stream(sys.stderr)
    _configure_logging(args.log_level, stderr)
    try:
        if args.command == "run":
            _take_back_spec(args)
            with _stray_prints_off_stdout(args.ray is not None, args.log_level is not None):
                code = _run(args, sys.stdin, stdout, stderr)
            if stdout.broken:
                _detach_stdout()
            return code
        return run_demo(seconds=args.seconds)
    except KeyboardInterrupt:  # Ctrl-C in the demo; ``run`` handles SIGINT itself
        return 130
    except BrokenPipeError:  # the demo's reader went away (``| head``)
        _detach_stdout()
        return 1
    except _UsageError as exc:
        stderr.write_line(f"{parser.prog}: error: {exc}")
        return 2


@contextlib.contextmanager
def _stray_prints_off_stdout(active: bool, verbose: bool) -> Iterator[None]:
    """While ``active``, ``print()`` to ``sys.stdout`` goes to stderr (``verbose``) or
    nowhere; our outcome lines keep the real stdout.

    Ray's driver prints notices such as "(raylet) A worker died..." to whatever
    ``sys.stdout`` is, and stdout is the run's JSON-lines channel. The crash those
    notices report is an outcome line and a status entry already.
    """
    if not active:
        yield
        return
    saved = sys.stdout
    sink = sys.stderr if verbose else open(os.devnull, "w", encoding="utf-8")
    sys.stdout = sink
    try:
        yield
    finally:
        sys.stdout = saved
        if sink is not sys.stderr:
            sink.close()


def _detach_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone, so the final flush at
    interpreter exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
