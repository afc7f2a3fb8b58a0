"""What a scenario's run found: per variant and metric a summary of its samples,
the same-run ratios, and whether each of the issue's targets is met."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ._scenario import Metric, Scenario, Target

__all__ = [
    "Summary",
    "LimitResult",
    "VariantResult",
    "RatioResult",
    "ScenarioResult",
]


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
