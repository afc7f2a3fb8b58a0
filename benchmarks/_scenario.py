"""What a scenario declares: its metrics, variants, baseline, ratios and the issue's targets.

A :class:`Scenario` names its variants (ours and its baselines), the metrics each
repetition reports, the baseline every row is compared with, the ratios that
matter (``ours / floor``) and the issue's targets for them. A variant's ``run()``
does one repetition and times only its own work, returning a :data:`Sample`
(:func:`throughput` or :func:`latency` make one). :class:`Options` is what the
command line asks of every scenario builder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

__all__ = [
    "MIN_REPEATS",
    "MIN_HEAVY_REPEATS",
    "WARMUP_ROUNDS",
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
    "throughput",
    "latency",
    "percentile",
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
