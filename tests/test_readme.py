"""The README's demo figures are the recorded output of `make demo`, rendered, not hand-copied."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _figures():
    spec = importlib.util.spec_from_file_location("demo_figures", ROOT / "benchmarks" / "demo_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_demo_section_is_the_rendered_record():
    figures = _figures()
    readme = (ROOT / "README.md").read_text()
    section = readme.split(figures.START, 1)[1].split(figures.END, 1)[0].strip("\n")
    assert section == figures.render(json.loads(figures.RECORD.read_text())), \
        "README's demo section differs from the record: run python benchmarks/demo_figures.py --render"


def test_the_figures_script_runs_the_makefiles_demo_commands():
    commands = _figures().demo_commands()
    assert [c[:2] for c in commands] == [[".venv/bin/edgekd", "distill"], [".venv/bin/edgekd", "export"],
                                         [".venv/bin/edgekd", "bench"]]
    assert commands[0][commands[0].index("--out") + 1] == "runs/demo"


def test_rewriting_keeps_the_text_around_the_section():
    figures = _figures()
    text = f"before\n{figures.START}\nold\n{figures.END}\nafter\n"
    assert figures.rewrite_readme(text, "new") == f"before\n{figures.START}\nnew\n{figures.END}\nafter\n"
