"""Running a scenario: interleaved rounds, one warm-up then the measured ones.

:func:`run_scenario` runs the variants round-robin, A B C A B C, one warm-up round
then at least :data:`MIN_REPEATS` measured ones, so that the noise of a shared
machine hits every variant alike; ratios of medians measured side by side are the
figures to trust. Set-up and tear-down stay outside a variant's clock; a pinned
scenario's rounds run on one CPU.
"""
from __future__ import annotations

import gc
import math
import os
import sys
import time
from typing import Dict, List, Optional, TextIO

from ._results import LimitResult, RatioResult, ScenarioResult, Summary, VariantResult
from ._scenario import MIN_HEAVY_REPEATS, MIN_REPEATS, WARMUP_ROUNDS, Sample, Scenario

__all__ = [
    "progress",
    "effective_repeats",
    "run_scenario",
    "pin_to_one_cpu",
    "allowed_cpus",
]

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
    allowed = allowed_cpus()
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
    began = time.monotonic()
    samples = _measure(scenario, repeats, warmup, gc_enabled)
    seconds = time.monotonic() - began
    return _summarise(scenario, samples, repeats, warmup, gc_enabled, seconds, pinned_cpu)


def _measure(scenario: Scenario, repeats: int, warmup: int,
             gc_enabled: bool) -> Dict[str, List[Sample]]:
    """Run the rounds; every variant's samples of the measured ones, by variant name."""
    keys = [m.key for m in scenario.metrics]
    samples: Dict[str, List[Sample]] = {v.name: [] for v in scenario.variants}
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
    return samples


def _summarise(scenario: Scenario, samples: Dict[str, List[Sample]], repeats: int,
               warmup: int, gc_enabled: bool, seconds: float,
               pinned_cpu: Optional[int]) -> ScenarioResult:
    """Medians with min..max, ratios to the baselines and the targets' verdicts."""
    keys = [m.key for m in scenario.metrics]
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


def _divide(a: float, b: float) -> float:
    """``a / b``, or NaN when ``b`` is zero (a baseline that used no CPU at all)."""
    return a / b if b else math.nan


def allowed_cpus() -> Optional[set]:
    """The CPUs this process may run on now; None where affinity cannot be read."""
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

