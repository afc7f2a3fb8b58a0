"""The harness: interleaved rounds, medians with min..max, same-run ratios, one table.

A :class:`Scenario` names its variants (ours and its baselines), the metrics each
repetition reports, the baseline every row is compared with, the ratios that
matter (``ours / floor``) and the issue's targets for them. :func:`run_scenario`
runs the variants round-robin, A B C A B C, one warm-up round then at least
:data:`MIN_REPEATS` measured ones, so that the noise of a shared machine hits every
variant alike; ratios of medians measured side by side are the figures to trust. A
variant's ``run()`` does one repetition and times only its own work: set-up and
tear-down stay outside the clock.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

from . import _baseline

__all__ = [
    "MIN_REPEATS",
    "MIN_HEAVY_REPEATS",
    "Metric",
    "EVENTS_PER_S",
    "P50_US",
    "P99_US",
    "Sample",
    "Target",
    "Variant",
    "Ratio",
    "Limit",
    "Scenario",
    "Options",
    "ScenarioResult",
    "throughput",
    "latency",
    "percentile",
    "run_scenario",
    "format_table",
    "document",
    "write_json",
    "pin_to_one_cpu",
    "main",
]

#: The fewest measured repetitions a scenario may run (after its warm-up round).
MIN_REPEATS = 5
#: The fewest a heavy scenario may run when it says why (``Scenario.repeats_reason``).
MIN_HEAVY_REPEATS = 3
WARMUP_ROUNDS = 1


@dataclass(frozen=True)
class Metric:
    """One figure a repetition reports, e.g. events per second or p99 latency."""

    key: str
    label: str
    higher_is_better: bool
    spec: str = ",.0f"  # format spec of a value
    unit: str = ""  # how a target in this metric's units is written, e.g. "µs"

    def format(self, value: float) -> str:
        if value is None or math.isnan(value):
            return "n/a"
        return format(value, self.spec)


EVENTS_PER_S = Metric("events_per_s", "events/s", higher_is_better=True, unit="events/s")
P50_US = Metric("p50_us", "p50 µs", higher_is_better=False, spec=",.1f", unit="µs")
P99_US = Metric("p99_us", "p99 µs", higher_is_better=False, spec=",.1f", unit="µs")

#: What one repetition of a variant returns: metric key -> value.
Sample = Mapping[str, float]


def throughput(count: int, seconds: float) -> Dict[str, float]:
    """The sample of a repetition that handled ``count`` events in ``seconds``."""
    return {EVENTS_PER_S.key: count / seconds}


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (``fraction`` in 0..1)."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(len(ordered) * fraction))
    return ordered[rank - 1]


def latency(seconds: Sequence[float]) -> Dict[str, float]:
    """The sample of a repetition that timed each operation (seconds): p50 and p99 in µs."""
    ordered = sorted(seconds)
    return {P50_US.key: percentile(ordered, 0.50) * 1e6,
            P99_US.key: percentile(ordered, 0.99) * 1e6}


def _divide(a: float, b: float) -> float:
    """``a / b``, or NaN when ``b`` is zero (a baseline that used no CPU at all)."""
    return a / b if b else math.nan


@dataclass(frozen=True)
class Target:
    """What the issue asks of a figure: ``op`` (``>=``, ``<=``, ``<``) ``value``.

    On a ratio the value is a factor (``>= 0.75x``); on a variant's own figure it is
    in the metric's units (``<= 10,000 µs``).
    """

    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=", "<"):
            raise ValueError("a target's op is >=, <= or <, got %r" % (self.op,))

    def met(self, figure: float) -> bool:
        if figure is None or math.isnan(figure):
            return False
        if self.op == ">=":
            return figure >= self.value
        if self.op == "<=":
            return figure <= self.value
        return figure < self.value

    def describe(self, metric: Optional[Metric] = None) -> str:
        if metric is None:
            return "target %s %.2fx" % (self.op, self.value)
        return "target %s %s %s" % (self.op, format(self.value, ",g"), metric.unit)


@dataclass(frozen=True)
class Variant:
    """One way of doing a scenario's work.

    ``run()`` performs one repetition (its own set-up and tear-down outside the
    clock) and returns a sample with a value for every metric of the scenario.
    ``baseline`` names the variant its "vs" column divides by (default: the
    scenario's); ``ours`` marks plugin_service's own variants (for the plot).
    """

    name: str
    label: str
    run: Callable[[], Sample]
    baseline: Optional[str] = None
    ours: bool = False


@dataclass(frozen=True)
class Ratio:
    """A ratio of medians to report, ``variant / baseline``, under ``label``.

    ``metric`` picks one metric (None: a row per metric); ``target`` is the issue's
    bound on that ratio, if it sets one.
    """

    label: str
    variant: str
    baseline: str
    metric: Optional[str] = None
    target: Optional[Target] = None


@dataclass(frozen=True)
class Limit:
    """An absolute target on one variant's median, e.g. p99 lateness <= 10 ms."""

    variant: str
    metric: str
    target: Target


@dataclass(frozen=True)
class Scenario:
    """A workload, the variants that perform it and how to compare them."""

    name: str
    title: str
    metrics: Tuple[Metric, ...]
    variants: Tuple[Variant, ...]
    baseline: str  # every row's "vs" column divides by this variant's median
    ratios: Tuple[Ratio, ...] = ()
    limits: Tuple[Limit, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    notes: Tuple[str, ...] = ()
    #: At most this many measured rounds (a heavy scenario), never fewer than
    #: MIN_HEAVY_REPEATS, and only with ``repeats_reason`` printed under the table.
    repeats: Optional[int] = None
    repeats_reason: str = ""
    #: Run on one CPU unless ``--no-pin``: for single-operation latencies, whose
    #: thread hand-off is bimodal across CPUs. ``pin_reason`` is printed.
    pinned: bool = False
    pin_reason: str = ""

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("%s: duplicate variant names %r" % (self.name, names))
        wanted = [self.baseline] + [n for r in self.ratios for n in (r.variant, r.baseline)]
        wanted += [v.baseline for v in self.variants if v.baseline is not None]
        wanted += [lim.variant for lim in self.limits]
        missing = sorted(set(wanted) - set(names))
        if missing:
            raise ValueError("%s: unknown variants %r" % (self.name, missing))
        keys = {m.key for m in self.metrics}
        stray = sorted({r.metric for r in self.ratios if r.metric is not None} - keys
                       | {lim.metric for lim in self.limits} - keys)
        if stray:
            raise ValueError("%s: unknown metrics %r" % (self.name, stray))
        if self.repeats is not None and (self.repeats < MIN_HEAVY_REPEATS
                                         or not self.repeats_reason):
            raise ValueError("%s: fewer rounds need at least %d and a reason"
                             % (self.name, MIN_HEAVY_REPEATS))
        if self.pinned and not self.pin_reason:
            raise ValueError("%s: a pinned scenario says why" % self.name)

    def baseline_of(self, variant: Variant) -> str:
        return variant.baseline if variant.baseline is not None else self.baseline


@dataclass(frozen=True)
class Options:
    """What the command line asks of every scenario builder."""

    quick: bool = False
    repeats: int = MIN_REPEATS
    events: Optional[int] = None  # overrides a scenario's event (or operation) count
    gc_enabled: bool = True  # False: the cyclic GC is off during each repetition
    pin: Optional[bool] = None  # True: everything on one CPU; False: nothing; None: per scenario


@dataclass
class Summary:
    median: float
    minimum: float
    maximum: float
    samples: List[float]

    @classmethod
    def of(cls, samples: List[float]) -> "Summary":
        return cls(statistics.median(samples), min(samples), max(samples), samples)


@dataclass
class LimitResult:
    target: Target
    met: bool


@dataclass
class VariantResult:
    name: str
    label: str
    baseline: str  # the variant its "vs" column divides by
    baseline_label: str
    ours: bool
    metrics: Dict[str, Summary]
    vs_baseline: Dict[str, float]  # median / the baseline's median, per metric
    limits: Dict[str, LimitResult]  # metric key -> the absolute target


@dataclass
class RatioResult:
    label: str
    variant: str
    baseline: str
    metric: str
    ratio: float  # of medians
    round_min: float  # of the per-round ratios (paired, same round)
    round_max: float
    target: Optional[Target] = None
    met: Optional[bool] = None


@dataclass
class ScenarioResult:
    scenario: Scenario
    repeats: int
    warmup: int
    gc_enabled: bool
    seconds: float
    variants: List[VariantResult]
    ratios: List[RatioResult]
    pinned_cpu: Optional[int] = None  # the one CPU its rounds ran on, if pinned

    def to_dict(self) -> Dict[str, Any]:
        s = self.scenario
        return {
            "name": s.name,
            "title": s.title,
            "params": dict(s.params),
            "notes": list(s.notes),
            "baseline": s.baseline,
            "repeats": self.repeats,
            "repeats_reason": s.repeats_reason or None,
            "warmup_rounds": self.warmup,
            "gc_enabled": self.gc_enabled,
            "pinned_cpu": self.pinned_cpu,
            "seconds": round(self.seconds, 2),
            "metrics": {m.key: {"label": m.label, "unit": m.unit,
                                "higher_is_better": m.higher_is_better} for m in s.metrics},
            "variants": [{
                "name": v.name,
                "label": v.label,
                "ours": v.ours,
                "baseline": v.baseline,
                "metrics": {key: {
                    "median": m.median, "min": m.minimum, "max": m.maximum,
                    "samples": m.samples, "vs_baseline": v.vs_baseline[key],
                    "target": (v.limits[key].target.describe(_metric(s, key))
                               if key in v.limits else None),
                    "met": v.limits[key].met if key in v.limits else None,
                } for key, m in v.metrics.items()},
            } for v in self.variants],
            "ratios": [{
                "label": r.label, "variant": r.variant, "baseline": r.baseline,
                "metric": r.metric, "ratio": r.ratio,
                "round_min": r.round_min, "round_max": r.round_max,
                "target": r.target.describe() if r.target is not None else None,
                "met": r.met,
            } for r in self.ratios],
        }

    def verdicts(self) -> List[Tuple[str, bool]]:
        """Every target of this scenario as (what, met)."""
        out = []
        for v in self.variants:
            for key, lim in v.limits.items():
                out.append(("%s %s %s %s" % (
                    self.scenario.name, v.label, _metric(self.scenario, key).label,
                    lim.target.describe(_metric(self.scenario, key))), lim.met))
        for r in self.ratios:
            if r.target is not None:
                out.append(("%s %s %s %s" % (
                    self.scenario.name, r.label, _metric(self.scenario, r.metric).label,
                    r.target.describe()), bool(r.met)))
        return out


def _metric(scenario: Scenario, key: str) -> Metric:
    return next(m for m in scenario.metrics if m.key == key)


# ---------------------------------------------------------------- running
_started = time.monotonic()


def progress(message: str, stream: TextIO = sys.stderr) -> None:
    """Say what runs now: overwrite one line on a terminal, else one line each."""
    line = "[%6.1fs] %s" % (time.monotonic() - _started, message)
    if stream.isatty():
        stream.write("\r\033[K" + line)
    else:
        stream.write(line + "\n")
    stream.flush()


def _end_progress(stream: TextIO = sys.stderr) -> None:
    if stream.isatty():
        stream.write("\r\033[K")
        stream.flush()


def effective_repeats(scenario: Scenario, requested: int) -> int:
    """The measured rounds ``scenario`` runs when ``requested`` are asked for."""
    if scenario.repeats is not None:
        return min(requested, scenario.repeats)
    return requested


def run_scenario(scenario: Scenario, repeats: int = MIN_REPEATS,
                 warmup: int = WARMUP_ROUNDS, gc_enabled: bool = True,
                 pin: Optional[bool] = None) -> ScenarioResult:
    """Run ``scenario``: ``warmup`` rounds, then ``repeats`` measured rounds (fewer
    if the scenario caps them), each round running every variant once in order.

    With ``gc_enabled=False`` the cyclic GC is off during each repetition, as
    ``timeit`` does. ``pin`` (None: as the scenario asks) runs its rounds, and
    every thread they start, on one CPU.
    """
    if not (scenario.pinned if pin is None else pin):
        return _run_rounds(scenario, repeats, warmup, gc_enabled, None)
    allowed = _affinity()
    cpu = pin_to_one_cpu()
    try:
        return _run_rounds(scenario, repeats, warmup, gc_enabled, cpu)
    finally:
        if allowed is not None:
            os.sched_setaffinity(0, allowed)


def _run_rounds(scenario: Scenario, repeats: int, warmup: int, gc_enabled: bool,
                pinned_cpu: Optional[int]) -> ScenarioResult:
    repeats = effective_repeats(scenario, repeats)
    floor = MIN_HEAVY_REPEATS if scenario.repeats is not None else MIN_REPEATS
    if repeats < floor:
        raise ValueError("%s: at least %d measured repetitions, got %d"
                         % (scenario.name, floor, repeats))
    keys = [m.key for m in scenario.metrics]
    samples: Dict[str, List[Sample]] = {v.name: [] for v in scenario.variants}
    began = time.monotonic()
    for round_no in range(warmup + repeats):
        measured = round_no >= warmup
        tag = ("rep %d/%d" % (round_no - warmup + 1, repeats) if measured
               else "warm-up %d/%d" % (round_no + 1, warmup))
        for variant in scenario.variants:
            progress("%s %s: %s" % (scenario.name, tag, variant.label))
            gc.collect()  # no variant pays for the previous one's garbage
            if not gc_enabled:
                gc.disable()
            try:
                sample = variant.run()
            finally:
                gc.enable()
            absent = [k for k in keys if k not in sample]
            if absent:
                raise ValueError("%s/%s returned no %r" % (scenario.name, variant.name, absent))
            if measured:
                samples[variant.name].append(sample)
    _end_progress()
    seconds = time.monotonic() - began

    summaries = {name: {k: Summary.of([s[k] for s in runs]) for k in keys}
                 for name, runs in samples.items()}
    labels = {v.name: v.label for v in scenario.variants}
    limits: Dict[str, Dict[str, LimitResult]] = {v.name: {} for v in scenario.variants}
    for lim in scenario.limits:
        figure = summaries[lim.variant][lim.metric].median
        limits[lim.variant][lim.metric] = LimitResult(lim.target, lim.target.met(figure))
    variants = []
    for v in scenario.variants:
        base_name = scenario.baseline_of(v)
        base = summaries[base_name]
        variants.append(VariantResult(
            v.name, v.label, base_name, labels[base_name], v.ours, summaries[v.name],
            {k: _divide(summaries[v.name][k].median, base[k].median) for k in keys},
            limits[v.name]))
    ratios = []
    for r in scenario.ratios:
        for k in keys if r.metric is None else [r.metric]:
            paired = [_divide(a[k], b[k])
                      for a, b in zip(samples[r.variant], samples[r.baseline])]
            ratio = _divide(summaries[r.variant][k].median, summaries[r.baseline][k].median)
            ratios.append(RatioResult(
                r.label, r.variant, r.baseline, k, ratio, min(paired), max(paired),
                r.target, None if r.target is None else r.target.met(ratio)))
    return ScenarioResult(scenario, repeats, warmup, gc_enabled, seconds, variants, ratios,
                          pinned_cpu)


# ------------------------------------------------------------- reporting
def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else "%.2fx" % value


def _verdict(met: Optional[bool]) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def format_table(results: Sequence[ScenarioResult]) -> str:
    """One table for every scenario: variant rows, then the named ratio rows, each
    with the issue's target (where it sets one) and whether it is met."""
    header = ("scenario", "variant", "metric", "median", "min..max", "vs baseline",
              "target", "met")
    rows: List[Tuple[str, ...]] = []
    for result in results:
        s = result.scenario
        metrics = {m.key: m for m in s.metrics}
        for v in result.variants:
            for key, summary in v.metrics.items():
                m = metrics[key]
                lim = v.limits.get(key)
                rows.append((s.name, v.label, m.label, m.format(summary.median),
                             "%s..%s" % (m.format(summary.minimum), m.format(summary.maximum)),
                             "%s %s" % (_ratio(v.vs_baseline[key]), v.baseline_label),
                             lim.target.describe(m) if lim else "",
                             _verdict(lim.met if lim else None)))
        for r in result.ratios:
            rows.append((s.name, r.label, metrics[r.metric].label + " ratio", _ratio(r.ratio),
                         "%s..%s per round" % (_ratio(r.round_min), _ratio(r.round_max)), "",
                         r.target.describe() if r.target else "-", _verdict(r.met)))
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    right = {3}  # medians line up on the right

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    previous = None
    for row in rows:
        if previous is not None and row[0] != previous:
            out.append("")
        out.append(line(row))
        previous = row[0]
    out.append("")
    reasons_told = set()
    for result in results:
        s = result.scenario
        out.append("%s: %s; %d measured rounds after %d warm-up, interleaved; cyclic GC %s; "
                   "%s%.0f s." % (s.name, s.title, result.repeats, result.warmup,
                                  "on" if result.gc_enabled else "off (--no-gc)",
                                  "" if result.pinned_cpu is None
                                  else "on one CPU (%d); " % result.pinned_cpu,
                                  result.seconds))
        if s.repeats is not None and result.repeats < MIN_REPEATS:
            out.append("  fewer rounds: %s" % s.repeats_reason)
        if result.pinned_cpu is not None and s.pinned:
            out.append("  one CPU: %s" % (s.pin_reason if s.pin_reason not in reasons_told
                                          else "as above"))
            reasons_told.add(s.pin_reason)
        out.extend("  note: %s" % note for note in s.notes)
    out.append("Medians of the measured rounds; ratios are of medians measured in the same "
               "run (\"per round\": the range of the paired per-round ratios). A ratio row "
               "with target \"-\": the issue sets none.")
    verdicts = [v for result in results for v in result.verdicts()]
    missed = [what for what, met in verdicts if not met]
    if verdicts:
        out.append("Targets: %d of %d met%s" % (len(verdicts) - len(missed), len(verdicts),
                                                 "; missed:" if missed else "."))
        out.extend("  MISSED %s" % what for what in missed)
    return "\n".join(out)


def environment() -> Dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "switch_interval_s": sys.getswitchinterval(),
    }


def _plain(value: Any) -> Any:
    """JSON without NaN or infinities (strict parsers reject them): those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def document(results: Sequence[ScenarioResult], command: str,
             options: Options) -> Dict[str, Any]:
    """Every figure (and every sample) of a run, as ``--json`` writes it (NaN: None)."""
    verdicts = [v for result in results for v in result.verdicts()]
    return _plain({
        "command": command,
        "quick": options.quick,
        "pin": {None: "per scenario", True: "all (--pin)", False: "none (--no-pin)"}[
            options.pin],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "targets": [{"target": what, "met": met} for what, met in verdicts],
        "scenarios": [r.to_dict() for r in results],
    })


def write_json(path: str, results: Sequence[ScenarioResult], command: str,
               options: Options) -> None:
    """Write every figure (and every sample) of a run as JSON (see :func:`document`)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document(results, command, options), fh, indent=2, ensure_ascii=False,
                  allow_nan=False)
        fh.write("\n")


# ---------------------------------------------------------- command line
Builder = Callable[[Options], Scenario]


def _affinity() -> Optional[set]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def pin_to_one_cpu() -> Optional[int]:
    """Run this thread, and every thread and process it starts later, on one CPU
    (the highest it may use); None where affinity cannot be set."""
    try:
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError, ValueError):
        return None
    return cpu


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
    if args.pin and _affinity() is None:
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
