"""The harness: interleaved rounds, medians with min..max, same-run ratios, one table.

A :class:`Scenario` names its variants (ours and its baselines), the metrics each
repetition reports, the baseline every row is compared with, the ratios that
matter (``ours / floor``) and the issue's targets for them. :func:`run_scenario`
runs the variants round-robin, A B C A B C, one warm-up round then at least
:data:`MIN_REPEATS` measured ones, so that the noise of a shared machine hits every
variant alike; ratios of medians measured side by side are the figures to trust. A
variant's ``run()`` does one repetition and times only its own work: set-up and
tear-down stay outside the clock.

This module is what the scenario modules import; each part lives in its own:
``_scenario`` what a scenario declares (metrics, variants, ratios, targets,
options), ``_results`` what a run found, ``_rounds`` running the interleaved
rounds (and pinning them to one CPU), ``_table`` the printed table, ``_document``
the JSON of ``--json``, ``_cli`` the command line.
"""
from __future__ import annotations

from ._cli import main
from ._document import document, write_json
from ._results import ScenarioResult
from ._rounds import pin_to_one_cpu, run_scenario
from ._scenario import (
    EVENTS_PER_S,
    MIN_HEAVY_REPEATS,
    MIN_REPEATS,
    P50_US,
    P99_US,
    Limit,
    Metric,
    Options,
    Ratio,
    Sample,
    Scenario,
    Target,
    Variant,
    latency,
    percentile,
    throughput,
)
from ._table import format_table

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
