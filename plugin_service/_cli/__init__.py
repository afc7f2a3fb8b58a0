"""The ``plugin-service`` command line (also ``python -m plugin_service``).

``demo`` runs the demo host; ``run`` hosts plugins, reads JSON-lines events on
stdin and writes one JSON line per outcome on stdout. Only this entry point
configures logging: it removes loguru's default handler, so the command stays
quiet on stderr unless ``-v LEVEL`` asks for ``plugin_service`` logs.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from .._demo import run_demo
from .dead_letters import dead_letters
from .parser import _take_back_spec, _UsageError, build_parser
from .run import _run
from .streams import _configure_logging, _detach_stdout, _stray_prints_off_stdout, _Stream

__all__ = ["build_parser", "main"]


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
        if args.command == "dead-letters":
            return dead_letters(args, stdout, stderr)
        return run_demo(seconds=args.seconds)
    except KeyboardInterrupt:  # Ctrl-C in the demo; ``run`` handles SIGINT itself
        return 130
    except BrokenPipeError:  # the demo's reader went away (``| head``)
        _detach_stdout()
        return 1
    except _UsageError as exc:
        stderr.write_line(f"{parser.prog}: error: {exc}")
        return 2
