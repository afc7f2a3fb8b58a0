"""The ``expiry`` benchmark's variants run, with tiny counts (they check that
every queued event resolved with ``EventExpired``, BenchmarkError otherwise)."""
import pytest

from benchmarks import expiry

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("variant", [expiry._ours_expires_at, expiry._ours_max_queue_age,
                                     expiry._floor])
def test_the_expiry_variants_measure_lateness(variant) -> None:
    sample = variant(20)
    assert sample["p99_us"] >= sample["p50_us"] >= 0.0
