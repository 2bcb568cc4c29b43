"""``edgekd bench NEW --against OLD``: both measured in one run, pair by pair, and the latency rule
of edgekd.device.bench.gate.paired (a paired bootstrap interval of the ratio of medians)."""
from __future__ import annotations

import copy
import json
import shutil

import pytest
from conftest import FAST_BENCH, run_cli_here

from edgekd.device.bench.gate import bench_and_check, check
from edgekd.device.bench.gate.paired import MIN_PAIRS, PAIRS, paired_change
from edgekd.core.errors import ConfigError
from edgekd.core.schema.bench import from_json, to_json

LATENCY = "max_latency_increase_percent"


def test_identical_pairs_give_a_point_interval():
    assert paired_change([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]) == (100.0, 100.0, 100.0)


def test_the_interval_holds_the_pairs_ratios_and_is_reproducible():
    """Pairs (1.1, 1), (1.2, 1), (1.3, 1): the estimate is the median ratio, 1.2 (+20%); a
    resample's median ratio is one of the three, so the interval's ends are among 10, 20, 30%."""
    new, old = [1.1, 1.2, 1.3], [1.0, 1.0, 1.0]
    change, low, high = paired_change(new, old)
    assert change == pytest.approx(20.0)
    assert low == pytest.approx(10.0) and high == pytest.approx(30.0)
    assert paired_change(new, old) == (change, low, high)
    with pytest.raises(ValueError):
        paired_change([1.0, 2.0], [1.0])


def test_pairing_cancels_drift_that_a_plain_comparison_sees():
    """The machine slows down 40% half-way; each pair shares the moment, so the paired estimate
    stays at the model's true +5%, within a tight interval."""
    old = [1.0, 1.0, 1.4, 1.4, 1.4]
    new = [o * 1.05 for o in old]
    change, low, high = paired_change(new, old)
    assert change == pytest.approx(5.0) and low == pytest.approx(5.0) and high == pytest.approx(5.0)


def ab_doc(bench: dict, new_p50: list[float], old_p50: list[float]) -> dict:
    """A real bench document as an A/B result whose every model had these paired p50s."""
    old = copy.deepcopy(bench)
    new = copy.deepcopy(bench)
    for doc, p50 in ((new, new_p50), (old, old_p50)):
        for m in doc["models"]:
            for x in m["measurements"]:
                x["repeats"] = {"count": len(p50), "p50": list(p50), "p90": list(p50), "spread_ms": max(p50) - min(p50)}
    new["against"] = {"path": "old", "pairs": len(new_p50), "order": "alternating", "bench": old}
    return new


@pytest.mark.parametrize("new, old, passed", [
    ([1.3, 1.3, 1.3, 1.3, 1.3], [1.0] * 5, False),            # +30%, certain: beyond the 10% tolerance
    ([1.05, 1.06, 1.04, 1.05, 1.05], [1.0] * 5, True),        # +5%: within it
    ([1.3, 1.3, 1.3, 1.02, 1.03], [1.0] * 5, True),           # +30% estimate, interval reaching +2%: unsure
    # a drift and one noisy pair: the sides' medians are 1.4 and 1.0, the pairs' median ratio 1
    ([1.0, 1.4, 1.6, 1.4, 1.0], [1.0, 1.4, 1.0, 1.4, 1.0], True),
])
def test_a_latency_check_fails_only_when_the_whole_interval_is_above_the_tolerance(demo_bench, new, old, passed):
    report = check(ab_doc(demo_bench, new, old))
    latency = [c for c in report.checks if c.key == LATENCY]
    assert latency and all(c.passed == passed for c in latency), [c.line() for c in latency]
    change, low, _ = paired_change(new, old)
    assert all(c.measured == change and c.lower == low for c in latency)
    assert all(f"smallest detectable slow-down {10 + change - low:.1f}%" in c.line() for c in latency)


def test_the_baseline_rules_lines_state_what_they_could_detect(demo_bench):
    slower = copy.deepcopy(demo_bench)
    report = check(slower, baseline=demo_bench)
    lines = [c.line() for c in report.checks if c.key == LATENCY]
    assert lines and all("smallest detectable slow-down 10.0%" in line for line in lines)   # one repetition


@pytest.fixture(scope="module")
def slow_and_fast(demo_bundle, zoo_bundle, tmp_path_factory):
    """The same file name twice, as single model files (random inputs of each one's own shape): the
    zoo's ResNet teacher (slower) and the demo's tiny CNN student (faster)."""
    root = tmp_path_factory.mktemp("ab")
    for side, model in (("slow", zoo_bundle / "teacher.onnx"), ("fast", demo_bundle / "student.onnx")):
        (root / side).mkdir()
        shutil.copy(model, root / side / "m.onnx")
    return root / "slow" / "m.onnx", root / "fast" / "m.onnx"


# 200 timed runs per repetition, not FAST_BENCH's 5: the two models take 0.01-0.03 ms, and a p50 of 5
# such runs swung a pair by ±100 % on a quiet machine (the interval then reached below zero)
STEADY_BENCH = {**FAST_BENCH, "runs": 200}


def test_a_genuinely_slower_model_fails_and_the_faster_one_passes(slow_and_fast, tmp_path):
    slow, fast = slow_and_fast
    worse, report = bench_and_check(slow, against=fast, out=tmp_path / "bench.json", **STEADY_BENCH)
    [latency] = [c for c in report.checks if c.key == LATENCY]
    assert not latency.passed and latency.lower > 10, latency.line()
    assert worse["against"]["pairs"] == PAIRS == len(worse["models"][0]["measurements"][0]["repeats"]["p50"])
    assert worse["against"]["bench"]["models"][0]["sha256"] != worse["models"][0]["sha256"]
    again = from_json(to_json(worse).encode())       # the file alone gives the same verdicts
    assert [c.line() for c in check(again).checks] == [c.line() for c in report.checks]
    better, report = bench_and_check(fast, against=slow, repeat=MIN_PAIRS, out=False, **STEADY_BENCH)
    [latency] = [c for c in report.checks if c.key == LATENCY]
    assert latency.passed and latency.measured < 0, latency.line()


def test_the_two_sides_alternate_who_goes_first(slow_and_fast, demo_bundle):
    from edgekd.device.bench.run import run_sides
    labels = []
    run_sides(list(slow_and_fast), repeat=4, out=False, **FAST_BENCH,
              progress=lambda done, total, label: labels.append(label))
    sides = [("against" in label) for label in labels[:-1]]
    assert sides == [False, True, True, False, False, True, True, False]


@pytest.mark.parametrize("change, fragment", [("labels", "its labels differ"), ("eval", "its eval data differs")])
def test_against_a_bundle_of_other_labels_or_eval_data_is_refused_before_measuring(demo_bundle, tmp_path, change,
                                                                                    fragment):
    import numpy as np

    from edgekd.core.bundle import file_digest
    other = tmp_path / "other"
    shutil.copytree(demo_bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    if change == "labels":
        manifest["labels"] = [f"class {i}" for i in range(len(manifest["labels"]))]
    else:
        with np.load(other / "eval.npz") as z:
            x, y = z["x"][:-1], z["y"][:-1]
        np.savez(other / "eval.npz", x=x, y=y)
        manifest["files"]["eval.npz"].update(file_digest(other / "eval.npz"))
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=f"--against bundle is not an earlier version of this bundle: {fragment}"):
        bench_and_check(demo_bundle, against=other, out=False, **FAST_BENCH)


@pytest.mark.parametrize("args, fragment", [
    (["--baseline", "base.json"], "--against and --baseline both say what to compare with"),
    (["--repeat", "2"], "--against needs at least 3 repetitions"),
])
def test_against_with_a_baseline_or_too_few_pairs_is_one_error_line(demo_bundle, demo_bench, tmp_path, args,
                                                                     fragment):
    (tmp_path / "base.json").write_text(json.dumps(demo_bench))
    res = run_cli_here("bench", demo_bundle, "--against", demo_bundle, *args, "--out", tmp_path / "b.json",
                       cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip().startswith(f"error: {fragment}"), res.stderr
    assert not (tmp_path / "b.json").exists()
