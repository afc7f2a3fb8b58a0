"""The argument parser of ``plugin-service``, the fix-up of what it parsed, and the
error of a command line that cannot run."""
from __future__ import annotations

import argparse
from typing import Any

from loguru import logger

from .. import __version__
from .._checks import non_negative, positive_int
from .._discovery import DEFAULT_GROUP
from .feed import _MAX_LINE_BYTES

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

sources: --timer SERVICE:INGRESS=SECONDS and --websocket SERVICE:INGRESS=URL
attach a host-owned source (named timer-1, websocket-1...); its events' outcomes
are not written to stdout: they are counted in the status ("sources" and the
service's counters).

stopping: end of input, Ctrl-C (SIGINT) or SIGTERM stops reading and drains
every accepted event, each service for up to --stop-timeout, then a running
handler is cancelled and gets --cancel-grace. A second Ctrl-C or SIGTERM stops
now: queued events are answered as dropped. SIGUSR1 writes
{"status": {...}, "reason": "SIGUSR1"} as one line to stderr, then for every
handler that is overdue (or past --stack-after) its stack as one line
{"handler_stack": {...}, "service": NAME, "reason": "SIGUSR1"}; the final status
is written the same way at exit ("reason": "exit").

exit status: 0 when every service stopped cleanly; 1 when a service ended
FAILED or no service could start; 2 for a command line that cannot run (bad
option, plugin that cannot be loaded, nothing to host).
"""


# -------------------------------------------------------------- arguments
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


# argparse names a type function that raises ValueError in its message ("invalid
# _seconds value"); these raise ArgumentTypeError themselves, with words for a person.
def _positive_int(text: str) -> int:
    try:
        return positive_int("count", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count: {text!r} (an integer >= 1)") from None


def _seconds(text: str) -> float:
    try:
        return non_negative("seconds", float(text), optional=False, allow_nan=False)
    except ValueError:  # not a number, below 0, or nan
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r} "
                                         "(a number >= 0)") from None


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
    _add_demo(commands)
    _add_run(commands)
    from .dead_letters import add_dead_letter_commands  # it builds on this module
    add_dead_letter_commands(commands, _add_log_level, _add_run_bounds)
    return parser


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``demo`` command and its options."""
    demo = commands.add_parser(
        "demo", help="run the demo host with the example plugins",
        description="Host the example plugins (the 'words' service and the 'frequency' "
                    "tool), feed them events while a status line refreshes, then print "
                    "the final status table.")
    demo.add_argument("--seconds", metavar="N", type=_seconds, default=3.0,
                      help="how long to feed events (default: 3)")
    # -v also after the command; SUPPRESS keeps a level given before it.
    _add_log_level(demo, argparse.SUPPRESS)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``run`` command and its options, in the order ``--help`` lists them."""
    run = commands.add_parser(
        "run", help="host plugins and feed them JSON-lines events from stdin",
        description="Host plugins named as module:attr (or name=module:attr), or found "
                    "through an entry-point group, and feed them the JSON-lines events "
                    "read from stdin.",
        epilog=_RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_log_level(run, argparse.SUPPRESS)  # as for demo
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
    _add_run_bounds(run)
    from .sources import add_source_options  # it builds on this module's types
    add_source_options(run)
    run.add_argument("--status-file", metavar="PATH",
                     help="also write the final status as JSON to PATH")
    run.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="run each service as a Ray actor: in a local Ray instance on "
                          "127.0.0.1 without ADDRESS, else in the cluster at ADDRESS "
                          "(host:port); needs the 'ray' extra")


def _add_run_bounds(run: argparse.ArgumentParser) -> None:
    """The options of ``run`` that bound queues, calls, stopping and input lines."""
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
    run.add_argument("--stack-after", metavar="S", type=_seconds, default=None,
                     help="show in the status the stack of a handler running S seconds "
                          "or more (default: only of an overdue one)")
    run.add_argument("--max-line-bytes", metavar="N", type=_positive_int,
                     default=_MAX_LINE_BYTES,
                     help="longest input line; a longer one is rejected with LineTooLong "
                          f"and skipped (default: {_MAX_LINE_BYTES}, 1 MiB)")


# ---------------------------------------------------------- after parsing
class _UsageError(Exception):
    """A command line that cannot run: reported on stderr with exit code 2."""


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
