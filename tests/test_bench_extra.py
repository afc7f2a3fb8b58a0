"""The ``bench`` extra at work: the pykka baselines and the plot (issue 17).

The benchmarks themselves never run in the test suite; these drive the places
that use the extras' packages, with tiny counts, so that CI's minimum-versions job
(which installs ``bench`` at its declared minimums) proves ``pykka`` and
``matplotlib`` lower bounds (and ``otel``'s, for the tracing scenario). Without the
extra they are skipped.
"""
from pathlib import Path

import pytest

from benchmarks._harness import EVENTS_PER_S, Ratio, Scenario, Variant, main


def test_the_pykka_baselines_run_as_the_benchmarks_drive_them() -> None:
    pytest.importorskip("pykka")
    from benchmarks import dispatch, roundtrip

    # Each checks that the actor handled every message (BenchmarkError otherwise).
    assert dispatch._pykka_tell(50)
    assert dispatch._pykka_ask(50)
    assert roundtrip._pykka_ask(20)


def _standin(options: object) -> Scenario:
    return Scenario(
        name="dispatch", title="stand-in", metrics=(EVENTS_PER_S,),
        variants=(Variant("ours", "ours", lambda: {"events_per_s": 2.0}, ours=True),
                  Variant("floor", "floor", lambda: {"events_per_s": 1.0})),
        baseline="floor", ratios=(Ratio("ours / floor", "ours", "floor"),))


def test_the_plot_is_written_as_a_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert main([_standin], ["--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote %s" % path in capsys.readouterr().err


def test_the_tracing_benchmark_drives_each_provider_it_measures() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    from benchmarks import tracing

    # Each checks that every round trip succeeded (BenchmarkError otherwise).
    for provider in (None, tracing._noop_provider, tracing._sdk_provider):
        assert tracing._round_trips(20, provider)["p50_us"] > 0
