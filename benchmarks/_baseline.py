"""Compare a run's same-run ratios with a saved run: ``--baseline FILE.json``.

Both sides are documents as ``--json`` writes them. A ratio is matched by its
scenario, the two variants it divides and its metric (not by its label, which is
prose). Each compared ratio gets before, after and the change in percent, and
whether it got better or worse given its metric's direction (events/s: higher is
better; latencies: lower is). The hot-path rule of issue 19 is a gate: a ratio of
a :data:`GATED_SCENARIOS` scenario more than :data:`TOLERANCE_PCT` percent worse
than before fails the comparison. Entries found on one side only, ratios that are
n/a, and settings that differ between the two runs are reported, never raised.

Standard library only, and no import of the harness: it reads plain documents.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "GATED_SCENARIOS",
    "TOLERANCE_PCT",
    "BaselineError",
    "Row",
    "load",
    "compare",
    "settings_differ",
    "format_comparison",
]

#: Scenarios whose every ratio is gated ("any round-trip ratio more than 3% worse
#: is rework", issue 19).
GATED_SCENARIOS = ("roundtrip",)
#: How much worse, in percent of the saved ratio, a gated ratio may get.
TOLERANCE_PCT = 3.0

#: (scenario, variant, baseline variant, metric key): one ratio of one run.
Key = Tuple[str, str, str, str]


class BaselineError(ValueError):
    """A saved run that cannot be read as a benchmark document."""


@dataclass(frozen=True)
class Entry:
    """One ratio as a document states it."""

    label: str  # e.g. "ours / queue+Future p50 µs"
    ratio: Optional[float]  # None: n/a (a NaN ratio is saved as null)
    higher_is_better: Optional[bool]  # None: the document does not say


@dataclass(frozen=True)
class Row:
    """One line of the comparison: a ratio before and after.

    ``status`` is "" when both sides have a number, else what is missing:
    "new" (not in the saved run), "missing" (not in this run) or "n/a".
    """

    scenario: str
    label: str
    before: Optional[float]
    after: Optional[float]
    higher_is_better: Optional[bool]
    gated: bool
    status: str = ""

    @property
    def change_pct(self) -> Optional[float]:
        """(after / before - 1) in percent; None unless both are numbers."""
        if self.before is None or self.after is None or self.before == 0:
            return None
        return (self.after / self.before - 1.0) * 100.0

    @property
    def worse_pct(self) -> Optional[float]:
        """How much worse, in percent (negative: better); None if unknown."""
        change = self.change_pct
        if change is None or self.higher_is_better is None:
            return None
        return -change if self.higher_is_better else change

    @property
    def flagged(self) -> bool:
        """True when this is a gated ratio more than TOLERANCE_PCT worse."""
        worse = self.worse_pct
        return self.gated and worse is not None and worse > TOLERANCE_PCT


def load(path: str) -> Dict[str, Any]:
    """The document saved in ``path``; BaselineError if it is not one."""
    try:
        with open(path, encoding="utf-8") as fh:
            document = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BaselineError("cannot read %s: %s" % (path, exc)) from None
    if not isinstance(document, dict) or not isinstance(document.get("scenarios"), list):
        raise BaselineError("%s has no \"scenarios\" list: not written by --json" % path)
    return document


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _scenarios(document: Mapping[str, Any]) -> Dict[str, Mapping[str, Any]]:
    """Scenario name -> its section, skipping sections without a name."""
    out: Dict[str, Mapping[str, Any]] = {}
    for section in document.get("scenarios") or ():
        if isinstance(section, dict) and isinstance(section.get("name"), str):
            out[section["name"]] = section
    return out


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _entries(section: Mapping[str, Any]) -> Dict[Key, Entry]:
    """Every readable ratio of one scenario's section (unreadable ones are skipped)."""
    metrics = _dict(section.get("metrics"))
    out: Dict[Key, Entry] = {}
    for r in section.get("ratios") or ():
        r = _dict(r)
        variant, baseline, key = r.get("variant"), r.get("baseline"), r.get("metric")
        if not (isinstance(variant, str) and isinstance(baseline, str)
                and isinstance(key, str)):
            continue
        metric = _dict(metrics.get(key))
        direction = metric.get("higher_is_better")
        label = r.get("label") or "%s / %s" % (variant, baseline)
        out[(section["name"], variant, baseline, key)] = Entry(
            "%s %s" % (label, metric.get("label", key)), _number(r.get("ratio")),
            direction if isinstance(direction, bool) else None)
    return out


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> List[Row]:
    """A row for every ratio of every scenario in ``after`` (this run), in its order,
    then the saved ratios of those scenarios this run lacks. Scenarios only the
    saved run has are left out (a run may be restricted to some)."""
    saved = _scenarios(before)
    rows: List[Row] = []
    for name, section in _scenarios(after).items():
        old = _entries(saved[name]) if name in saved else {}
        new = _entries(section)
        gated = name in GATED_SCENARIOS
        for key, entry in new.items():
            was = old.get(key)
            b = None if was is None else was.ratio
            status = "new" if was is None else ("n/a" if b is None or entry.ratio is None
                                                else "")
            direction = entry.higher_is_better
            if direction is None and was is not None:
                direction = was.higher_is_better
            rows.append(Row(name, entry.label, b, entry.ratio, direction, gated, status))
        rows.extend(Row(name, was.label, was.ratio, None, was.higher_is_better, gated,
                        "missing") for key, was in old.items() if key not in new)
    return rows


def settings_differ(before: Mapping[str, Any], after: Mapping[str, Any]) -> List[str]:
    """What differs between the two runs' settings, per scenario both ran: the
    --quick flag, params (event counts, ...), pinning and GC. A ratio may move
    with them, so the comparison says so."""
    notes = []
    if before.get("quick") != after.get("quick"):
        notes.append("--quick: saved %s, this run %s" % (before.get("quick"),
                                                          after.get("quick")))
    saved = _scenarios(before)
    for name, section in _scenarios(after).items():
        if name not in saved:
            continue
        old = saved[name]
        was, now = _dict(old.get("params")), _dict(section.get("params"))
        for what in sorted(set(was) | set(now)):
            if was.get(what) != now.get(what):
                notes.append("%s %s: saved %s, this run %s"
                             % (name, what, was.get(what), now.get(what)))
        for what in ("gc_enabled", "repeats"):
            if old.get(what) != section.get(what):
                notes.append("%s %s: saved %s, this run %s"
                             % (name, what, old.get(what), section.get(what)))
        if (old.get("pinned_cpu") is None) != (section.get("pinned_cpu") is None):
            notes.append("%s pinned to one CPU: saved %s, this run %s"
                         % (name, old.get("pinned_cpu") is not None,
                            section.get("pinned_cpu") is not None))
    return notes


def _ratio(value: Optional[float]) -> str:
    return "n/a" if value is None else "%.3fx" % value


def _verdict(row: Row) -> str:
    if row.status:
        return row.status
    worse = row.worse_pct
    if worse is None:
        return "direction unknown"
    word = "worse" if worse > 0 else ("better" if worse < 0 else "same")
    if row.flagged:
        return "%s: MORE THAN %g%% WORSE" % (word, TOLERANCE_PCT)
    return word + (" (gated: within %g%%)" % TOLERANCE_PCT if row.gated else "")


def format_comparison(rows: Sequence[Row], saved_path: str,
                      notes: Sequence[str] = ()) -> str:
    """The comparison table, the settings that differ, and the gate's verdict."""
    header = ("scenario", "ratio", "before", "after", "change", "verdict")
    cells = [(r.scenario, r.label, _ratio(r.before), _ratio(r.after),
              "n/a" if r.change_pct is None else "%+.1f%%" % r.change_pct, _verdict(r))
             for r in rows]
    widths = [max(len(c[i]) for c in cells + [header]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if 2 <= i <= 4 else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    out = ["Same-run ratios against %s:" % saved_path, line(header),
           line(["-" * w for w in widths])]
    out.extend(line(c) for c in cells)
    out.extend("  settings differ: %s" % note for note in notes)
    flagged = [r for r in rows if r.flagged]
    if flagged:
        out.append("Gate FAILED: %d %s ratio(s) more than %g%% worse than saved."
                   % (len(flagged), "/".join(GATED_SCENARIOS), TOLERANCE_PCT))
    elif not any(r.gated and r.status == "" for r in rows):
        out.append("Gate: no %s ratio compared." % "/".join(GATED_SCENARIOS))
    else:
        out.append("Gate passed: no %s ratio more than %g%% worse than saved."
                   % ("/".join(GATED_SCENARIOS), TOLERANCE_PCT))
    return "\n".join(out)
