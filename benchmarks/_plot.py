"""Draw a run's figures: throughput on the left, latency on the right, baselines beside ours.

One panel per scenario and unit (events/s, µs, s, KiB, % of a core): a horizontal
bar per variant and metric at its median, a whisker from min to max, ours in blue
and the baselines in grey, each bar labelled with its median and its ratio to its
baseline. Under the bars, each panel lists the scenario's ratios with the issue's
targets and whether they are met; an absolute target is a red dashed line.

matplotlib comes with the ``bench`` extra and is imported only here, only when
``--plot`` asks for a figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from ._results import ScenarioResult, VariantResult
from ._scenario import Metric

__all__ = ["plot"]

_OURS = ("#1f77b4", "#0b3c66")  # first and second metric of a panel
_BASE = ("#b9b9b9", "#6e6e6e")
_MISSED = "#c0392b"
_MET = "#1e7b34"


@dataclass
class _Panel:
    result: ScenarioResult
    metrics: Tuple[Metric, ...]
    side: str  # "throughput", "latency" or "other"


def _panels(results: Sequence[ScenarioResult]) -> List[_Panel]:
    panels: List[_Panel] = []
    for result in results:
        by_unit: Dict[str, List[Metric]] = {}
        for metric in result.scenario.metrics:
            by_unit.setdefault(metric.unit, []).append(metric)
        for unit, metrics in by_unit.items():
            side = ("throughput" if unit == "events/s" else
                    "latency" if unit == "µs" else "other")
            panels.append(_Panel(result, tuple(metrics), side))
    return panels


def _bare(metric: Metric) -> str:
    """A metric's label without its unit: "p99 µs" -> "p99", "start s" -> "start"."""
    label, unit = metric.label, metric.unit
    if unit and label.endswith(" " + unit):
        label = label[:-len(unit) - 1]
    return label.strip() or metric.label


def _notes(result: ScenarioResult, metrics: Tuple[Metric, ...]) -> List[Tuple[str, Any]]:
    """The panel's targets and ratios as (line, met or None)."""
    lines: List[Tuple[str, Any]] = []
    for variant in result.variants:
        for metric in metrics:
            lim = variant.limits.get(metric.key)
            if lim is not None:
                lines.append(("%s %s: %s, %s" % (
                    variant.label, metric.label, lim.target.describe(metric),
                    "met" if lim.met else "MISSED"), lim.met))
    for r in result.ratios:
        shown = next((m for m in metrics if m.key == r.metric), None)
        if shown is None:
            continue
        verdict = ("%s, %s" % (r.target.describe(), "met" if r.met else "MISSED")
                   if r.target is not None else "no target in the issue")
        lines.append(("%s (%s): %.2fx  [%s]" % (r.label, shown.label, r.ratio, verdict),
                      r.met))
    return lines


def _draw(ax: Any, panel: _Panel) -> None:
    """One panel: a bar per variant and metric, absolute targets, ticks, title, notes."""
    result = panel.result
    variants: List[VariantResult] = list(result.variants)
    metrics = panel.metrics
    cap, targets = _scale(variants, metrics)
    _bars(ax, variants, metrics, cap)
    for value, met in targets:
        if value <= cap:
            ax.axvline(value, color=_MET if met else _MISSED, linestyle="--", linewidth=1)
    ax.set_xlim(0, cap * 1.3)
    _frame(ax, result, variants, metrics)


def _scale(variants: List[VariantResult],
           metrics: Tuple[Metric, ...]) -> Tuple[float, List[Tuple[float, bool]]]:
    """Where the panel's bars are cut, and its absolute targets as (value, met)."""
    # The axis fits the medians (and any absolute target near them); a whisker
    # running past it is cut at the edge, its full range is in the table.
    medians = [v.metrics[m.key].median for v in variants for m in metrics]
    top = max(medians) if medians else 1.0
    targets = [(lim.target.value, lim.met) for v in variants for m in metrics
               for lim in [v.limits.get(m.key)] if lim is not None]
    for value, _ in targets:
        if value <= 3 * top:
            top = max(top, value)
    return top * 1.5, targets


def _bars(ax: Any, variants: List[VariantResult], metrics: Tuple[Metric, ...],
          cap: float) -> None:
    """A bar per variant and metric at its median, whiskered min..max (cut at ``cap``),
    labelled with its median and its ratio to its baseline."""
    height = 0.8 / len(metrics)
    labelled = set()
    for row, variant in enumerate(variants):
        for j, metric in enumerate(metrics):
            summary = variant.metrics[metric.key]
            y = row + (j - (len(metrics) - 1) / 2) * height
            colour = (_OURS if variant.ours else _BASE)[j % 2]
            name = _bare(metric)
            legend = None
            if (variant.ours, j) not in labelled:
                labelled.add((variant.ours, j))
                legend = "%s %s" % ("ours" if variant.ours else "baseline", name.split()[-1])
            high = min(summary.maximum, cap)
            ax.barh(y, summary.median, height=height * 0.92, color=colour, label=legend,
                    xerr=[[summary.median - summary.minimum],
                          [max(0.0, high - summary.median)]],
                    error_kw={"ecolor": "#333333", "elinewidth": 0.8, "capsize": 2})
            vs = variant.vs_baseline[metric.key]
            text = metric.format(summary.median)
            if variant.baseline != variant.name and not math.isnan(vs):
                text += "  (%.2fx)" % vs
            if len(metrics) > 1:
                text = "%s %s" % (name, text)
            if summary.maximum > cap:
                text = "> " + text
            ax.text(high, y, "  " + text, va="center", fontsize=7.5)


def _frame(ax: Any, result: ScenarioResult, variants: List[VariantResult],
           metrics: Tuple[Metric, ...]) -> None:
    """The panel's variant ticks (ours in bold), title, grid, notes and legend."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yticks(range(len(variants)))
    ax.set_yticklabels([v.label for v in variants], fontsize=8)
    for tick, variant in zip(ax.get_yticklabels(), variants):
        if variant.ours:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=8)
    if metrics[0].unit == "events/s":
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "%.0fk" % (v / 1e3)))
    better = "higher" if metrics[0].higher_is_better else "lower"
    ax.set_title("%s: %s (%s is better)" % (result.scenario.name, metrics[0].unit, better),
                 fontsize=10, loc="left", fontweight="bold")
    ax.grid(axis="x", linewidth=0.4, alpha=0.6)
    ax.set_axisbelow(True)
    for k, (line, met) in enumerate(_notes(result, metrics)):
        ax.annotate(line, (0.0, 0.0), xycoords="axes fraction", xytext=(0, -20 - 11 * k),
                    textcoords="offset points", ha="left", va="top", fontsize=7.5,
                    color="#444444" if met is None else (_MET if met else _MISSED))
    if len(metrics) > 1:
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=4,
                  frameon=False, borderaxespad=0.1, handlelength=1.2, columnspacing=0.8)


def plot(results: Sequence[ScenarioResult], path: str, title: str = "") -> None:
    """Write a PNG of ``results`` to ``path``: throughput left, latency right."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    panels = _panels(results)
    left = [p for p in panels if p.side == "throughput"] + \
        [p for p in panels if p.side == "other"]
    right = [p for p in panels if p.side == "latency"]
    columns = [column for column in (left, right) if column]
    rows = max(len(column) for column in columns)
    def size(column: List[_Panel], r: int) -> float:
        if r >= len(column):
            return 0.0
        panel = column[r]
        return len(panel.result.variants) + 0.45 * len(_notes(panel.result, panel.metrics))

    heights = [max(size(left, r), size(right, r)) + 2.0 for r in range(rows)]
    figure, axes = plt.subplots(
        rows, len(columns), figsize=(8.5 * len(columns), 0.42 * sum(heights) + 1.2),
        gridspec_kw={"height_ratios": heights}, squeeze=False)
    for c, column in enumerate(columns):
        for r in range(rows):
            ax = axes[r][c]
            if r < len(column):
                _draw(ax, column[r])
            else:
                ax.axis("off")
    if len(columns) == 2:
        axes[0][0].annotate("THROUGHPUT (and scale)", (0.5, 1.0), xytext=(0, 24),
                            xycoords="axes fraction", textcoords="offset points",
                            ha="center", fontsize=11, color="#555555")
        axes[0][1].annotate("LATENCY", (0.5, 1.0), xytext=(0, 24),
                            xycoords="axes fraction", textcoords="offset points",
                            ha="center", fontsize=11, color="#555555")
    figure.suptitle("plugin_service benchmarks: medians, min..max whiskers, (ratio to "
                    "baseline); ours in blue%s" % ("\n" + title if title else ""),
                    fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)
