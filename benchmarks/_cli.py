"""The command line: which scenarios and variants run, how, and what is written after.

:func:`main` builds the scenarios, runs them, prints one table, optionally writes
JSON (:mod:`._document`) and a plot (:mod:`._plot`), and compares with a saved run
(:mod:`._baseline`).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from typing import Callable, List, Optional, Sequence

from . import _baseline
from ._document import document, write_json
from ._rounds import allowed_cpus, run_scenario
from ._scenario import MIN_REPEATS, Options, Scenario
from ._table import format_table

__all__ = ["Builder", "only", "main"]

Builder = Callable[[Options], Scenario]


def only(scenario: Scenario, variant: str) -> Optional[Scenario]:
    """``scenario`` cut down to one variant (its own baseline), or None without it."""
    for v in scenario.variants:
        if v.name == variant:
            alone = dataclasses.replace(v, baseline=None)
            limits = tuple(lim for lim in scenario.limits if lim.variant == variant)
            return dataclasses.replace(scenario, variants=(alone,), baseline=v.name,
                                       ratios=(), limits=limits)
    return None


def _names(text: str) -> List[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run benchmark scenarios interleaved with their baselines "
                               "and print one table of medians, same-run ratios and the "
                               "issue's targets.",
        epilog="Exit status: 0, or 1 when --baseline finds a ratio of the %s scenario "
               "more than %g%% worse than saved (2: bad arguments)."
               % ("/".join(_baseline.GATED_SCENARIOS), _baseline.TOLERANCE_PCT))
    parser.add_argument("names", nargs="*", metavar="SCENARIO",
                        help="run only these scenarios (as --only), e.g. roundtrip dispatch")
    parser.add_argument("--quick", action="store_true", help="a short run of every scenario")
    parser.add_argument("--json", metavar="FILE",
                        help="write the figures to FILE as JSON (a run to pass to "
                             "--baseline later)")
    parser.add_argument("--baseline", metavar="FILE.json",
                        help="after the run, compare every same-run ratio with the run "
                             "saved in FILE.json by --json: before, after, change in "
                             "%%%%; exit status 1 if a %s ratio is more than %g%%%% worse"
                             % ("/".join(_baseline.GATED_SCENARIOS),
                                _baseline.TOLERANCE_PCT))
    parser.add_argument("--plot", metavar="FILE.png",
                        help="draw throughput and latency beside the baselines (matplotlib)")
    parser.add_argument("--only", metavar="NAME[,NAME]",
                        help="run only these scenarios (by the names the table shows)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS,
                        help="measured rounds after the warm-up (at least %d)" % MIN_REPEATS)
    parser.add_argument("--events", type=int, metavar="N",
                        help="events (or operations) per repetition, overriding the "
                             "scenario's default")
    parser.add_argument("--no-gc", action="store_true",
                        help="turn the cyclic GC off during each repetition (as timeit does)")
    parser.add_argument("--variant", metavar="NAME",
                        help="run only this variant, without baselines (for profiling)")
    pinning = parser.add_mutually_exclusive_group()
    pinning.add_argument("--pin", dest="pin", action="store_const", const=True,
                         help="run every scenario on one CPU (by default only the "
                              "single-operation latency scenarios are)")
    pinning.add_argument("--no-pin", dest="pin", action="store_const", const=False,
                         help="let the OS spread every scenario's threads over CPUs")
    return parser


def _select(parser: argparse.ArgumentParser, args: argparse.Namespace,
            scenarios: List[Scenario]) -> List[Scenario]:
    """The scenarios the positional names, ``--only`` and ``--variant`` leave."""
    if args.only is not None or args.names:
        wanted = _names(args.only or "") + [n for name in args.names for n in _names(name)]
        known = [s.name for s in scenarios]
        unknown = [name for name in wanted if name not in known]
        if unknown or not wanted:
            parser.error("scenario names are among %s, got %r"
                         % (", ".join(known), unknown or args.only))
        scenarios = [s for s in scenarios if s.name in wanted]
    if args.variant is not None:
        scenarios = [cut for cut in (only(s, args.variant) for s in scenarios)
                     if cut is not None]
        if not scenarios:
            parser.error("no scenario has a variant named %r" % args.variant)
    return scenarios


def main(builders: Sequence[Builder], argv: Optional[Sequence[str]] = None,
         prog: str = "python -m benchmarks") -> int:
    """Run the scenarios ``builders`` make, print one table, optionally write JSON
    and a plot, and compare with a saved run (``--baseline``: 1 if the gate fails)."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.repeats < MIN_REPEATS:
        parser.error("--repeats must be at least %d" % MIN_REPEATS)
    if args.events is not None and args.events < 1:
        parser.error("--events must be at least 1")
    options = Options(quick=args.quick, repeats=args.repeats, events=args.events,
                      gc_enabled=not args.no_gc, pin=args.pin)
    if args.pin and allowed_cpus() is None:
        parser.error("--pin: this platform cannot set CPU affinity")
    saved = None
    if args.baseline is not None:
        try:  # read before the run, not after minutes of it
            saved = _baseline.load(args.baseline)
        except _baseline.BaselineError as exc:
            parser.error("--baseline: %s" % exc)
    command = " ".join([prog] + list(sys.argv[1:] if argv is None else argv))
    scenarios = _select(parser, args, [build(options) for build in builders])

    began = time.monotonic()
    results = [run_scenario(scenario, repeats=options.repeats,
                            gc_enabled=options.gc_enabled, pin=options.pin)
               for scenario in scenarios]
    print("%s  (Python %s, %s CPUs; %.0f s)" % (command, platform.python_version(),
                                                 os.cpu_count(), time.monotonic() - began))
    print(format_table(results))
    if args.json:
        write_json(args.json, results, command, options)
        print("wrote %s" % args.json, file=sys.stderr)
    if args.plot:
        from ._plot import plot  # matplotlib only when a plot is asked for

        plot(results, args.plot, title=command)
        print("wrote %s" % args.plot, file=sys.stderr)
    if saved is None:
        return 0
    ran = document(results, command, options)
    rows = _baseline.compare(saved, ran)
    print()
    print(_baseline.format_comparison(rows, args.baseline,
                                      _baseline.settings_differ(saved, ran)))
    return 1 if any(row.flagged for row in rows) else 0
