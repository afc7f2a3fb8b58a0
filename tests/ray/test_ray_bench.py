"""``python -m benchmarks.ray_backend``'s scenarios: every variant runs, with tiny
counts, on the session's Ray instance (each checks that it did the work it was
timed for, ``BenchmarkError`` otherwise; run with ``-m stress``), and the targets
are the issue's (in the default run)."""
from __future__ import annotations

from typing import Any, List, Tuple

import pytest

from benchmarks import ray_backend
from benchmarks._harness import Options

pytestmark = pytest.mark.timeout(120)


def _variants() -> List[Tuple[str, Any]]:
    scenarios = [build(Options(events=20)) for build in ray_backend.builders()]
    return [(scenario.name, variant) for scenario in scenarios for variant in scenario.variants]


# Behind the stress marker (``-m stress``): each variant starts actors of its own,
# about a second apiece, and the default run must stay within its six minutes.
@pytest.mark.stress
@pytest.mark.parametrize("scenario,variant", _variants(),
                         ids=lambda item: getattr(item, "name", item))
def test_every_ray_benchmark_variant_measures_what_it_reports(
        ray_session: Any, scenario: str, variant: Any) -> None:
    sample = variant.run()
    assert sample["events_per_s"] > 0.0, (scenario, variant.name, sample)
    if scenario == "ray_backend":
        assert sample["roundtrips_per_s"] > 0.0 and sample["p99_us"] >= sample["p50_us"] > 0.0


def test_the_ray_benchmark_carries_the_issues_targets() -> None:
    main, handler, services = [build(Options(quick=True)) for build in ray_backend.builders()]
    targets = {(ratio.label, ratio.metric): ratio.target for ratio in main.ratios
               if ratio.target is not None}
    assert targets[("ours on Ray / bare Ray", "events_per_s")].value == 5.0
    assert targets[("ours on Ray / bare Ray", "roundtrips_per_s")].value == 0.9
    assert [limit.target.value for limit in handler.limits] == [800.0]
    assert services.variants[0].name == "ray_ours_x1"
