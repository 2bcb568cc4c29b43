"""The README's "Five minutes on your own data", run as written: its commands are read from the README
(as benchmarks/demo_figures.py reads the Makefile's), on the digits as a folder of PNG files."""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import digits_png_folder

ROOT = Path(__file__).resolve().parents[1]
EDGEKD = str(Path(sys.executable).parent / "edgekd")


def quickstart_commands(readme: Path = ROOT / "README.md") -> list[list[str]]:
    """The commands of the README's quickstart block (its first ```sh block), comments left out."""
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## Five minutes on your own data"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return [shlex.split(line) for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_quickstart_is_the_pipeline_a_user_runs():
    commands = quickstart_commands()
    assert [c[:2] for c in commands] == [["edgekd", "distill"], ["edgekd", "export"], ["edgekd", "bench"],
                                         ["edgekd", "init-budget"], ["edgekd", "bench"], ["edgekd", "predict"]]
    assert "folder:photos" in commands[0] and "--int8" in commands[1] and "--budget" in commands[4]


@pytest.mark.slow
def test_the_readme_quickstart_runs_as_written_on_a_folder_of_images(tmp_path):
    digits_png_folder(tmp_path / "photos")
    (tmp_path / "new_photos").mkdir()
    for png in sorted((tmp_path / "photos" / "digit3").glob("*.png"))[:4]:
        shutil.copy(png, tmp_path / "new_photos" / png.name)
    outputs = []
    for command in quickstart_commands():
        done = subprocess.run([EDGEKD, *command[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{shlex.join(command)}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    cv = json.loads((tmp_path / "runs" / "mine" / "cv.json").read_text())
    assert cv["config"]["data"] == "folder:photos" and cv["config"]["folds"] == 1
    assert (tmp_path / "runs" / "mine" / "bundle" / "student.int8.tflite").is_file()
    assert (tmp_path / "edgekd-budget.toml").is_file()
    predicted = [line for line in outputs[-1].splitlines() if "new_photos" in line]
    assert len(predicted) == 4 and sum("digit3" in line for line in predicted) >= 3, outputs[-1]
