"""``plugin-service dead-letters list|redrive --db PATH``: the letters of an SQLite
dead-letter file as JSON lines, and their re-drive through a host of the
command line's services."""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime as _dt
import json
import sqlite3
from typing import Any

from .._config import ServiceConfig
from .._future import DispatchFuture
from .._guarded import describe
from .._host import PluginHost
from .._letters import SQLiteDeadLetterSink, StoredDeadLetter
from .outcomes import _error_of, _settled
from .parser import _UsageError
from .specs import _add_plugins
from .streams import _Stream

__all__ = ["add_dead_letter_commands", "dead_letters"]

_EPILOG = """\
list writes one JSON line per stored letter, oldest first: the letter's export
(service, event with its payload redacted, diagnostic) plus "id", "db",
"correlation_id", "attempt", "at", "payload_format" (json or repr),
"payload_kept", "payload_missing", "redriven_at" (null: not re-driven yet), "pid".

redrive hosts the services named by SPEC (as for run), re-drives the selected
letters that were not re-driven yet (all of them with --force; the ones of --id
only, with it) and writes one JSON line per letter, in the letters' order:
  {"id": N, "service": NAME, "correlation_id": ..., "attempt": A+1,
   "outcome": "succeeded", "result": ...}
  {"id": N, ..., "outcome": "rejected", "error": {"type": "RedriveRefused", ...}}
outcomes as for run; "rejected": not submitted (re-driven already, stored
without its raw payload: keep_payloads was off, or refused by the service). The
host stores its own dead letters in the same file, raw payloads kept, so a
letter that fails again can be re-driven later. Exit status 0 when every letter
succeeded, 1 otherwise, 2 for a command line that cannot run.
"""


def _since(text: str) -> _dt.datetime:
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time: {text!r} (ISO 8601)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)


def add_dead_letter_commands(commands: Any, log_level: Any, bounds: Any) -> None:
    """The ``dead-letters`` command and its ``list`` and ``redrive`` subcommands."""
    top = commands.add_parser(
        "dead-letters", help="list or re-drive the dead letters of an SQLite file",
        description="Read the dead letters an SQLiteDeadLetterSink stored, or re-drive them.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    log_level(top, argparse.SUPPRESS)
    actions = top.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("list", "write the stored letters as JSON lines"),
                       ("redrive", "submit the stored letters again to SPEC's services")):
        action = actions.add_parser(name, help=text, description=text, epilog=_EPILOG,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        log_level(action, argparse.SUPPRESS)
        action.add_argument("--db", metavar="PATH", required=True,
                            help="the SQLite file of an SQLiteDeadLetterSink")
        action.add_argument("--service", metavar="NAME", help="only the letters of NAME")
        action.add_argument("--kind", metavar="KIND",
                            help="only letters of diagnostic KIND (dispatch_failed, "
                                 "dispatch_timeout, service_stopped...)")
        action.add_argument("--since", metavar="TIME", type=_since,
                            help="only letters recorded at or after TIME (ISO 8601; UTC "
                                 "without an offset)")
        action.add_argument("--id", dest="ids", metavar="N", type=int, action="append",
                            default=[], help="only the letter of id N (repeatable)")
        if name == "list":
            action.add_argument("--pending", action="store_true",
                                help="only the letters not re-driven yet")
        else:
            _add_redrive_options(action, bounds)


def _add_redrive_options(action: argparse.ArgumentParser, bounds: Any) -> None:
    action.add_argument("specs", nargs="*", metavar="SPEC",
                        help="a plugin as module:attr or name=module:attr, as for run")
    action.add_argument("--group", action="append", default=[], metavar="GROUP",
                        help="also load the plugins of entry-point group GROUP")
    action.add_argument("--to", metavar="NAME", help="re-drive to service NAME instead of "
                                                     "each letter's own")
    action.add_argument("--force", action="store_true",
                        help="re-drive letters marked re-driven already too")
    bounds(action)


def _selected(args: argparse.Namespace) -> tuple[SQLiteDeadLetterSink, list[StoredDeadLetter]]:
    try:
        sink = SQLiteDeadLetterSink(args.db, keep_payloads=True)
        letters = sink.letters(args.service, args.kind, args.since)
    except sqlite3.Error as exc:
        raise _UsageError(f"cannot read dead letters from {args.db!r}: {describe(exc)}") \
            from None
    if args.ids:
        letters = [letter for letter in letters if letter.id in args.ids]
    elif getattr(args, "pending", False) or not getattr(args, "force", True):
        letters = [letter for letter in letters if letter.redriven_at is None]
    return sink, letters


def dead_letters(args: argparse.Namespace, stdout: _Stream, stderr: _Stream) -> int:
    """``plugin-service dead-letters ACTION``; returns the exit code."""
    sink, letters = _selected(args)
    if args.action == "list":
        for letter in letters:
            stdout.write_line(json.dumps(letter.to_dict()))
        return 0
    return _redrive(args, sink, letters, stdout, stderr)


def _line(letter: StoredDeadLetter, future: DispatchFuture[Any]) -> str:
    if getattr(future, "_owner", None) is None:  # never submitted: failed at once
        error = future.exception()
        outcome, what, value = "rejected", "error", _error_of(error) if error else None
    else:
        outcome, what, value = _settled(future)
    record = {"id": letter.id, "service": letter.service,
              "correlation_id": letter.correlation_id,
              "attempt": (letter.attempt or 0) + 1, "outcome": outcome, what: value}
    return json.dumps(record, allow_nan=False, default=str)


def _redrive(args: argparse.Namespace, sink: SQLiteDeadLetterSink,
             letters: list[StoredDeadLetter], stdout: _Stream, stderr: _Stream) -> int:
    config = ServiceConfig(queue_size=args.queue_size, dispatch_timeout=args.dispatch_timeout,
                           stop_timeout=args.stop_timeout, cancel_grace=args.cancel_grace)
    host = PluginHost(dead_letter_sink=sink, tool_cancel_grace=args.cancel_grace)
    code = 0
    try:
        _add_plugins(host, args, config, stderr)
        host.start_all()
        # A queue's worth at a time: re-drive never blocks, so more would be QueueFull.
        for start in range(0, len(letters), args.queue_size):
            chunk = letters[start:start + args.queue_size]
            futures = host.redrive(chunk, service=args.to, force=args.force)
            concurrent.futures.wait(futures)
            for letter, future in zip(chunk, futures):
                if future.exception() is not None:
                    code = 1
                stdout.write_line(_line(letter, future))
    except Exception as exc:
        if isinstance(exc, _UsageError):
            raise
        stderr.write_line(f"plugin-service: error: {describe(exc)}")
        code = 1
    finally:
        host.close(args.stop_timeout)
    return code
