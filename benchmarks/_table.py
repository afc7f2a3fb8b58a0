"""The one table a run prints: variant rows, ratio rows, targets, then a note per scenario."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Set, Tuple

from ._results import ScenarioResult
from ._scenario import MIN_REPEATS

__all__ = ["format_table"]


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else "%.2fx" % value


def _verdict(met: Optional[bool]) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def format_table(results: Sequence[ScenarioResult]) -> str:
    """One table for every scenario: variant rows, then the named ratio rows, each
    with the issue's target (where it sets one) and whether it is met."""
    header = ("scenario", "variant", "metric", "median", "min..max", "vs baseline",
              "target", "met")
    rows = [row for result in results for row in _rows(result)]
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
    out.extend(_footer(results))
    return "\n".join(out)


def _rows(result: ScenarioResult) -> List[Tuple[str, ...]]:
    """One scenario's rows: each variant's metrics, then its named ratios."""
    rows: List[Tuple[str, ...]] = []
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
    return rows


def _footer(results: Sequence[ScenarioResult]) -> List[str]:
    """Under the table: how each scenario ran and why, how to read it, the targets missed."""
    out: List[str] = []
    reasons_told: Set[str] = set()
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
    return out
