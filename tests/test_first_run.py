"""Rough edges of a first run (issue 31, items 5 and 6): ``--debug`` after the command's name, the
nearest zoo name for a typo, ``edgekd models``, and hints that name the user's own paths and flags."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_cli, run_cli_here
from edgekd.core.errors import BundleError, ConfigError, ModelError, close_names, unknown_name
from edgekd.device.bench import gate
from edgekd.train.models import FAMILIES, MODELS, build, count_macs, count_parameters
from edgekd.train.models.listing import list_models

ROOT = Path(__file__).resolve().parents[1]
DEMO_BENCH = ROOT / "benchmarks" / "results" / "gate_noise_baseline.json"


# -- --debug before or after the command ----------------------------------------------------------

@pytest.mark.parametrize("where", ["before", "after", "last"])
def test_debug_shows_the_traceback_wherever_it_is_given(tmp_path, where):
    command = ["distill", "--teacher", "resnet9", "--out", tmp_path / "run"]
    args = {"before": ["--debug", *command], "after": [command[0], "--debug", *command[1:]],
            "last": [*command, "--debug"]}[where]
    result = run_cli_here(*args)
    assert result.returncode == 1 and "Traceback" in result.stderr
    assert "ModelError: unknown model 'resnet9'" in result.stderr


def test_without_debug_the_same_mistake_is_one_error_line(tmp_path):
    assert_user_error(run_cli_here("distill", "--teacher", "resnet9", "--out", tmp_path / "run"),
                      "did you mean 'resnet8'?")


# -- a mistyped zoo name ---------------------------------------------------------------------------

def test_a_mistyped_zoo_name_suggests_the_nearest_whole_name_and_few_others():
    with pytest.raises(ModelError) as info:
        MODELS.get("resnet9")
    guess, also, listing = info.value.hint.replace("? also close: ", "; ").split("; ")
    assert guess == "did you mean 'resnet8'"
    assert also.split(", ")[0] == "resnet" and len(also.split(", ")) == 2       # three names, not all 24
    assert listing == f"'edgekd models' lists all {len(MODELS.names())}"


@pytest.mark.parametrize("typed, known, nearest", [
    ("resnett", MODELS.names(), "resnet"),            # a letter too many: not resnet8, one edit too
    ("mobilenetv4", MODELS.names(), "mobilenetv3"),
    ("kdd", ["dkd", "fitnet", "kd"], "kd"),
    ("widht", ["depth", "width"], "width"),             # two neighbours swapped: one edit
])
def test_close_names_rank_by_whole_name_edits(typed, known, nearest):
    assert close_names(typed, known)[0] == nearest


def test_a_short_list_of_names_is_still_listed_whole():
    assert unknown_name("loss", "kdd", ["dkd", "fitnet", "kd"]).hint == "did you mean 'kd'? known: dkd, fitnet, kd"


# -- edgekd models -----------------------------------------------------------------------------------

def test_list_models_counts_a_real_model_at_the_input_asked_for():
    [entry] = list_models("resnet8", image_size=(12, 12), channels=1, num_classes=3).models
    model = build("resnet8", (1, 12, 12), 3)       # real weights, not the meta device the listing uses
    assert (entry.name, entry.family) == ("resnet8", "resnet")
    assert (entry.parameters, entry.macs) == (count_parameters(model), count_macs(model, (1, 12, 12)))
    assert entry.description.startswith("resnet:depth=8")


def test_list_models_filters_by_pattern_and_orders_by_family_then_macs():
    assert {e.name for e in list_models("*_s2").models} == {n for n in MODELS.names() if n.endswith("_s2")}
    lite = list_models("lite", image_size=(16, 16))          # no wildcard: the names that contain it
    assert {e.name for e in lite.models} == {n for n in MODELS.names() if "lite" in n}
    assert lite.input_shape == (3, 16, 16) and lite.num_classes == 10
    assert [e.macs for e in lite.models] == sorted(e.macs for e in lite.models)
    assert {e.family for e in lite.models} == {"efficientnet_lite"} == {FAMILIES[e.name] for e in lite.models}


def test_list_models_refuses_what_it_cannot_count():
    with pytest.raises(ModelError, match="no zoo model matches 'resnet9'") as info:
        list_models("resnet9")
    assert info.value.hint.startswith("close: resnet8, resnet")
    with pytest.raises(ConfigError, match="--channels must be 1"):
        list_models(channels=2)


def test_models_command_prints_the_table_of_the_pattern():
    result = run_cli("models", "mobilenet*", "--image-size", "28", "--channels", "1", "--classes", "7")
    assert result.returncode == 0, result.stderr
    listing = list_models("mobilenet*", image_size=(28, 28), channels=1, num_classes=7)
    assert "1×28×28 sample, 7 classes" in result.stdout and "resnet" not in result.stdout
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]
    assert [row[:4] for row in rows] == [[e.name, e.family, f"{e.parameters:,}", f"{e.macs:,}"] for e in listing.models]
    assert_user_error(run_cli_here("models", "resnet9"), "no zoo model matches 'resnet9'")


# -- hints in the user's own paths ------------------------------------------------------------------

def test_init_budget_names_the_bench_target_and_the_budget_it_wrote(tmp_path):
    doc = json.loads(DEMO_BENCH.read_text())
    target = tmp_path / "runs" / "my demo" / "bundle"
    doc["target"]["path"] = str(target)
    (tmp_path / "bench.json").write_text(json.dumps(doc))
    out = tmp_path / "ci" / "budget.toml"
    out.parent.mkdir()
    proposal = gate.init_budget(tmp_path / "bench.json", out)
    assert proposal.check == f"edgekd bench {shlex.quote(str(target))} --budget {out}"
    assert f"# Check with: {proposal.check} [--baseline" in out.read_text()


def test_a_missing_budget_hint_proposes_it_from_the_bundle_given(tmp_path):
    bundle, budget = tmp_path / "runs" / "demo" / "bundle", tmp_path / "ci-budget.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        gate.bench_and_check(bundle, budget)          # read before anything is measured
    assert info.value.hint == f"propose one with: edgekd init-budget BUNDLE --out {budget}"   # no such bundle
    bundle.mkdir(parents=True)
    with pytest.raises(ConfigError, match="not found") as info:
        gate.bench_and_check(bundle, budget)
    assert info.value.hint == f"propose one with: edgekd init-budget {bundle} --out {budget}"


def _gray_folder(root: Path) -> Path:
    """Three classes of ten 8×8 gray PNG files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in range(3):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(root / f"c{label}" / f"{i}.png")
    return root


def test_rgb_teacher_weights_on_gray_images_hint_at_channels_3(tmp_path):
    from safetensors.torch import save_file

    from edgekd.train.config import load_config
    from edgekd.train.distill import Experiment
    from edgekd.train.distill.checks import check_models, load_data

    save_file(build("resnet8", (3, 8, 8), 3).state_dict(), str(tmp_path / "rgb.safetensors"))
    options = dict(data=f"folder:{_gray_folder(tmp_path / 'gray')}", teacher="resnet8", student="cnn:width=4",
                   teacher_weights=str(tmp_path / "rgb.safetensors"), folds=2, out=str(tmp_path / "run"))
    with pytest.raises(ModelError, match=r"'conv1.weight' has shape \[16, 3, 3, 3\] in the file") as info:
        Experiment.prepare(load_config(None, **options))
    assert "pass --channels 3" in info.value.hint and not (tmp_path / "run").exists()
    rgb = load_config(None, **options, channels=3)        # the hint's flag: the weights fit
    check_models(rgb, load_data(rgb), None)


def test_a_bundle_not_exported_yet_hints_at_exporting_its_run(tmp_path):
    from edgekd import Predictor
    from edgekd.device.bench.run import run_bench

    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "cv.json").write_text("{}")             # what makes a folder a run folder
    with pytest.raises(BundleError, match="not found") as info:
        run_bench(run / "bundle")                  # export's default bundle folder: no --out
    assert info.value.hint == f"the run '{run}' is not exported yet: edgekd export {run}"
    with pytest.raises(BundleError, match="not found") as info:
        Predictor(run / "int8")
    assert info.value.hint.endswith(f"edgekd export {run} --out {run / 'int8'}")
