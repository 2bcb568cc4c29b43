"""The figures of the README and the docs pages are the recorded output of `make demo` and of the benchmarks, rendered, not
hand-copied: each script that owns a README section renders it from its record."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))     # as when the scripts run: they import readme_section

import readme_section  # noqa: E402

# each has render(record) and SECTION and RECORD, or SECTIONS (README marker → record) for several
SCRIPTS = ["demo_figures", "int8_accuracy", "int8_speed", "losses", "distill_overhead", "fashion_mnist",
           "fashion_mnist_labels", "gate_noise",
           "predict", "sweep_digits", "test_times", "train_speed", "zoo_table"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_readme_section_is_its_scripts_rendering_of_the_record(name):
    script = _script(name)
    sections = getattr(script, "SECTIONS", None) or {script.SECTION: script.RECORD}
    for marker, record in sections.items():
        page = readme_section.holder(marker)        # README.md or one docs page, never two
        section = readme_section.section(page.read_text(), marker)
        assert section == script.render(json.loads(record.read_text())), \
            f"{page.name}'s {marker} section differs from the record: run python benchmarks/{name}.py --render"


def test_the_figures_script_runs_the_makefiles_demo_commands():
    commands = _script("demo_figures").demo_commands()
    assert [c[:2] for c in commands] == [[".venv/bin/edgekd", "distill"], [".venv/bin/edgekd", "export"],
                                         [".venv/bin/edgekd", "bench"]]
    assert commands[0][commands[0].index("--out") + 1] == "runs/demo"


def test_the_demo_record_was_made_with_the_makefiles_transfer_set():
    """The section shows what `make demo` runs: its --unlabelled (or none) is the record's."""
    command = _script("demo_figures").demo_commands()[0]
    given = command[command.index("--unlabelled") + 1] if "--unlabelled" in command else None
    record = json.loads((ROOT / "benchmarks" / "results" / "demo_figures.json").read_text())
    assert record["config"].get("unlabelled") == given, "run python benchmarks/demo_figures.py"


def test_the_zoo_table_counts_from_the_registry_and_takes_the_fastest_recorded_file():
    """Counts of the built model; p50 of the fastest of the row's files, named; "not measured" without a row."""
    zoo_table = _script("zoo_table")
    p50 = {"onnx": 0.9, "onnx-int8-u8": 0.5, "onnx-int8-s8": 0.8, "tflite": 0.6, "tflite-int8": 0.7}
    row = zoo_table.table_row("mobilenetv3_small_050_s2", {"mobilenetv3_small_050_s2@32": {"p50_ms": p50},
                                                           "mobilenetv3_small_100@224": {"p50_ms": p50}})
    assert row.split(" | ")[1:] == ["577,954", "0.83M", "0.50 ms onnx-int8-u8", "1.59M", "21.1M", "not measured", "",
                                    "yes |"]
    assert zoo_table.table_row("efficientnet_lite1", {}).split(" | ")[5:] == [
        "502.5M (600.2M at 240)", "not measured", "5.4M / 631M at 240", "not measured |"]


def test_rewriting_keeps_the_text_around_the_section():
    start, end = readme_section.markers("x")
    text = f"before\n{start}\nold\n{end}\nafter\n{start.replace('x', 'y')}\n"
    assert readme_section.rewrite(text, "x", "new") == f"before\n{start}\nnew\n{end}\nafter\n" \
        f"{start.replace('x', 'y')}\n"
