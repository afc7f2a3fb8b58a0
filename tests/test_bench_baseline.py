"""``python -m benchmarks --baseline FILE.json``: the comparison with a saved run.

No real benchmark runs here: the documents are written by hand, and the command
line is driven with stand-in scenarios whose variants return fixed figures.
"""
import json
from typing import Any, Dict, List, Optional

import pytest

from benchmarks import _baseline
from benchmarks._harness import (
    EVENTS_PER_S,
    P50_US,
    P99_US,
    Options,
    Ratio,
    Scenario,
    Variant,
    main,
)


def _ratio(variant: str, baseline: str, metric: str, ratio: Optional[float],
           label: str = "") -> Dict[str, Any]:
    return {"label": label or "%s / %s" % (variant, baseline), "variant": variant,
            "baseline": baseline, "metric": metric, "ratio": ratio}


_METRICS = {
    "events_per_s": {"label": "events/s", "higher_is_better": True},
    "p50_us": {"label": "p50 µs", "higher_is_better": False},
    "p99_us": {"label": "p99 µs", "higher_is_better": False},
}


def _doc(roundtrip: List[Dict[str, Any]], dispatch: List[Dict[str, Any]],
         quick: bool = False, extra: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    scenarios = [
        {"name": "dispatch", "params": {"events": 100000}, "metrics": _METRICS,
         "ratios": dispatch},
        {"name": "roundtrip", "params": {"operations": 20000}, "metrics": _METRICS,
         "pinned_cpu": 1, "ratios": roundtrip},
    ]
    return {"quick": quick, "scenarios": scenarios + (extra or [])}


def _write(tmp_path: Any, name: str, document: Dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


BEFORE = _doc(
    roundtrip=[_ratio("ours", "queue_future", "p50_us", 1.10, "ours / queue+Future"),
               _ratio("ours", "queue_future", "p99_us", 0.80, "ours / queue+Future"),
               _ratio("ours", "executor", "p50_us", 1.00)],
    dispatch=[_ratio("ours", "floor", "events_per_s", 1.30, "ours / floor"),
              _ratio("ours", "raw_queue", "events_per_s", 0.30)],
    extra=[{"name": "scale", "ratios": [_ratio("ours", "threads", "start_s", 1.4)]}])

AFTER = _doc(
    # p50 3.6% worse (flagged), p99 2.5% worse (within), executor better.
    roundtrip=[_ratio("ours", "queue_future", "p50_us", 1.14, "ours / queue+Future"),
               _ratio("ours", "queue_future", "p99_us", 0.82, "ours / queue+Future"),
               _ratio("ours", "executor", "p50_us", 0.95)],
    # Throughput 10% lower is worse but not gated; raw queue gone; pykka new.
    dispatch=[_ratio("ours", "floor", "events_per_s", 1.17, "ours / floor"),
              _ratio("ours", "pykka_ask", "events_per_s", 2.0)])


def _rows(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, _baseline.Row]:
    return {"%s %s" % (r.scenario, r.label): r for r in _baseline.compare(before, after)}


def test_before_after_change_and_direction() -> None:
    rows = _rows(BEFORE, AFTER)
    p50 = rows["roundtrip ours / queue+Future p50 µs"]
    assert (p50.before, p50.after) == (1.10, 1.14)
    assert p50.change_pct == pytest.approx(3.636, abs=1e-3)
    assert p50.worse_pct == pytest.approx(3.636, abs=1e-3)
    assert p50.flagged
    p99 = rows["roundtrip ours / queue+Future p99 µs"]
    assert p99.worse_pct == pytest.approx(2.5) and not p99.flagged
    executor = rows["roundtrip ours / executor p50 µs"]
    assert executor.worse_pct == pytest.approx(-5.0) and not executor.flagged
    floor = rows["dispatch ours / floor events/s"]
    # Higher is better for throughput: a lower ratio is worse, but dispatch is not gated.
    assert floor.change_pct == pytest.approx(-10.0)
    assert floor.worse_pct == pytest.approx(10.0)
    assert not floor.gated and not floor.flagged


def test_entries_on_one_side_only_are_reported() -> None:
    rows = _rows(BEFORE, AFTER)
    assert rows["dispatch ours / pykka_ask events/s"].status == "new"
    gone = rows["dispatch ours / raw_queue events/s"]
    assert (gone.status, gone.before, gone.after) == ("missing", 0.30, None)
    # A scenario only the saved run has is left out: this run was restricted.
    assert not any(r.scenario == "scale" for r in rows.values())


def test_table_shows_every_row_and_the_gate() -> None:
    rows = _baseline.compare(BEFORE, AFTER)
    text = _baseline.format_comparison(rows, "before.json")
    lines = text.splitlines()
    assert lines[0] == "Same-run ratios against before.json:"
    assert lines[1].split() == ["scenario", "ratio", "before", "after", "change", "verdict"]
    p50 = next(line for line in lines if "queue+Future p50" in line)
    assert "1.100x" in p50 and "1.140x" in p50 and "+3.6%" in p50
    assert "MORE THAN 3% WORSE" in p50
    p99 = next(line for line in lines if "queue+Future p99" in line)
    assert "+2.5%" in p99 and "gated: within 3%" in p99
    assert "-10.0%" in next(line for line in lines if "ours / floor" in line)
    assert any("new" in line and "pykka_ask" in line for line in lines)
    assert any("missing" in line and "raw_queue" in line for line in lines)
    assert lines[-1] == "Gate FAILED: 1 roundtrip ratio(s) more than 3% worse than saved."


def test_gate_passes_within_tolerance_and_says_when_nothing_was_compared() -> None:
    same = _baseline.compare(BEFORE, BEFORE)
    assert not any(r.flagged for r in same)
    assert _baseline.format_comparison(same, "b.json").splitlines()[-1].startswith(
        "Gate passed")
    no_roundtrip = {"scenarios": [s for s in AFTER["scenarios"] if s["name"] != "roundtrip"]}
    rows = _baseline.compare(BEFORE, no_roundtrip)
    assert _baseline.format_comparison(rows, "b.json").splitlines()[-1] == (
        "Gate: no roundtrip ratio compared.")


def test_na_ratios_and_malformed_entries_do_not_crash() -> None:
    malformed: List[Any] = [{"label": "no names"}, "not a dict"]
    before = _doc(roundtrip=[_ratio("ours", "queue_future", "p50_us", None)] + malformed,
                  dispatch=[])
    before["scenarios"].append({"ratios": []})  # no name: skipped
    after = _doc(roundtrip=[_ratio("ours", "queue_future", "p50_us", 1.2),
                            _ratio("ours", "odd", "unknown_metric", 1.0)],
                 dispatch=[], quick=True)
    rows = _rows(before, after)
    na = rows["roundtrip ours / queue_future p50 µs"]
    assert (na.status, na.change_pct, na.flagged) == ("n/a", None, False)
    odd = rows["roundtrip ours / odd unknown_metric"]
    assert (odd.status, odd.higher_is_better) == ("new", None)
    text = _baseline.format_comparison(list(rows.values()), "b.json",
                                       _baseline.settings_differ(before, after))
    assert "settings differ: --quick: saved False, this run True" in text


def test_settings_that_differ_are_named() -> None:
    after = json.loads(json.dumps(BEFORE))
    after["scenarios"][1]["params"] = {"operations": 3000}
    after["scenarios"][1]["pinned_cpu"] = None
    notes = _baseline.settings_differ(BEFORE, after)
    assert notes == [
        "roundtrip operations: saved 20000, this run 3000",
        "roundtrip pinned to one CPU: saved True, this run False"]


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("{not json", "cannot read"),
    ('{"scenarios": 3}', "not written by --json"),
])
def test_load_refuses_what_is_not_a_saved_run(tmp_path: Any, content: Optional[str],
                                              message: str) -> None:
    path = tmp_path / "saved.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(_baseline.BaselineError, match=message):
        _baseline.load(str(path))


# ------------------------------------------------- the command line, stand-ins only
def _standin(name: str, ours_p50: float) -> Any:
    """A builder of a scenario ``name`` whose figures are fixed: ours / base = ours_p50."""

    def build(options: Options) -> Scenario:
        return Scenario(
            name=name, title="stand-in", metrics=(P50_US, P99_US),
            variants=(Variant("ours", "ours", lambda: {"p50_us": ours_p50, "p99_us": 1.0},
                              ours=True),
                      Variant("base", "base", lambda: {"p50_us": 1.0, "p99_us": 1.0})),
            baseline="base", ratios=(Ratio("ours / base", "ours", "base"),))

    return build


def _throughput_standin(options: Options) -> Scenario:
    return Scenario(
        name="dispatch", title="stand-in", metrics=(EVENTS_PER_S,),
        variants=(Variant("ours", "ours", lambda: {"events_per_s": 2.0}, ours=True),
                  Variant("floor", "floor", lambda: {"events_per_s": 1.0})),
        baseline="floor", ratios=(Ratio("ours / floor", "ours", "floor"),))


def test_main_saves_a_run_and_gates_the_next(tmp_path: Any, capsys: Any) -> None:
    saved = str(tmp_path / "base.json")
    assert main([_standin("roundtrip", 1.10), _throughput_standin],
                ["--json", saved]) == 0
    assert [s["name"] for s in _baseline.load(saved)["scenarios"]] == ["roundtrip",
                                                                       "dispatch"]
    capsys.readouterr()
    # 2% worse: passes; only the scenario named on the command line runs.
    assert main([_standin("roundtrip", 1.122), _throughput_standin],
                ["roundtrip", "--baseline", saved]) == 0
    out = capsys.readouterr().out
    assert "Gate passed" in out and "dispatch" not in out.split("Same-run ratios")[1]
    # 4% worse: exit status 1.
    assert main([_standin("roundtrip", 1.144), _throughput_standin],
                ["--baseline", saved]) == 1
    out = capsys.readouterr().out
    assert "+4.0%" in out and "MORE THAN 3% WORSE" in out and "Gate FAILED" in out


def test_main_refuses_a_bad_baseline_and_unknown_names_before_running(
        tmp_path: Any, capsys: Any) -> None:
    ran: List[str] = []

    def once() -> Dict[str, float]:
        ran.append("ran")
        return {"p50_us": 1.0}

    def build(options: Options) -> Scenario:
        return Scenario(name="roundtrip", title="stand-in", metrics=(P50_US,),
                        variants=(Variant("ours", "ours", once),), baseline="ours")

    with pytest.raises(SystemExit) as exited:
        main([build], ["--baseline", str(tmp_path / "absent.json")])
    assert exited.value.code == 2 and "--baseline: cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([build], ["nosuch"])
    assert exited.value.code == 2 and "got ['nosuch']" in capsys.readouterr().err
    assert ran == []


def test_help_names_the_options_and_the_exit_status(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exited:
        main([_throughput_standin], ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0
    assert "SCENARIO" in out and "--json FILE" in out and "--baseline FILE.json" in out
    assert "exit status 1 if a roundtrip ratio is more than 3% worse" in out
    assert "Exit status: 0, or 1 when --baseline finds" in out
