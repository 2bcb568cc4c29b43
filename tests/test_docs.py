"""The documentation site: the generated command reference holds every option of every command and is
current (as are the other generated parts), the strict build fails on a broken link (so `make test`'s build is a check, not a formality), and the
Python API is one import whose functions return their documents."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "benchmarks")]     # as mkdocs and the scripts load them

import docsgen  # noqa: E402

MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]   # not --quiet: it hides the warnings --strict counts


def _sections(markdown: str) -> dict[str, str]:
    """The reference's text per command path (`edgekd distill` → its section)."""
    parts = markdown.split("\n## `")[1:] if not markdown.startswith("## `") else markdown[4:].split("\n## `")
    return {part.split("`", 1)[0]: part for part in parts}


def test_every_option_of_every_command_is_in_the_generated_reference():
    from edgekd.app.cli import cli

    sections = _sections(docsgen.commands_markdown())
    root = click.Context(cli, info_name="edgekd")
    assert set(sections) == {"edgekd"} | {f"edgekd {name}" for name in cli.list_commands(root)}
    for name in cli.list_commands(root):
        command = cli.commands[name]
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                for opt in param.opts + param.secondary_opts:
                    assert re.search(rf"^\| `[^`]*(?<![\w-]){opt}(?![\w-])", sections[f"edgekd {name}"], re.M), \
                        f"{opt} of edgekd {name} is missing from the command reference"
            elif isinstance(param, click.Argument):
                assert param.human_readable_name.upper() in sections[f"edgekd {name}"].split("```")[1]
    assert "--debug" in sections["edgekd"]


def test_the_generated_parts_of_the_pages_are_what_the_code_makes_now():
    # in a fresh interpreter: the option texts list registries (the zoo, the losses) that tests extend
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "docsgen.py"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, f"{done.stdout}run python tools/docsgen.py"
    text = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert "| `--teacher-weights FILE.safetensors` |" in text and "## `edgekd models`" in text


def test_a_stale_generated_part_is_found_and_rewritten():
    start, end = "<!-- generated:commands:start -->", "<!-- generated:commands:end -->"
    for stale in (f"a\n{start}\n{end}\nb", f"a\n{start}\nold text\n{end}\nb"):
        fresh = docsgen.rewritten(stale)
        assert fresh == f"a\n{start}\n{docsgen.commands_markdown()}\n{end}\nb" and docsgen.rewritten(fresh) == fresh


def test_every_link_of_the_readme_leads_to_a_file_and_heading_that_exist():
    """The strict build checks the site's links; the README is outside it, and links into it."""
    import markdown
    from pymdownx.slugs import slugify

    links = re.findall(r"\]\(([^)#:]+)(?:#([^)]+))?\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(links) > 10
    for path, anchor in links:
        assert (ROOT / path).is_file(), path
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(encoding="utf-8"), re.M)
            assert anchor in [slugify(case="lower")(markdown.markdown(h)[3:-4], "-") for h in headings], anchor


def test_a_help_text_with_a_pipe_or_an_angle_bracket_stays_one_table_cell():
    assert docsgen._cell("a | b <RUN>\n  c [x>=1]") == "a \\| b &lt;RUN&gt; c \\[x&gt;=1\\]"


def test_the_generated_schema_reference_holds_every_declared_field():
    from edgekd.core.schema.bench import BenchDoc, Measurement
    from edgekd.core.schema.cv import Document

    text = docsgen.schemas_markdown()
    assert [line for line in text.splitlines() if line.startswith("### ")] == [f"### {t}" for t in docsgen.DOCUMENTS]
    bench = text[text.index("### bench.json"):text.index("### sweep.json")]
    for key in BenchDoc.__annotations__:
        assert f"| `{key}` |" in bench, key
    for key in Measurement.__annotations__:                  # a shape inside a list inside a list
        assert f"| `models[].measurements[].{key}` |" in bench, key
    assert all(f"| `{key}` |" in text for key in Document.__annotations__)


def test_the_benchmarks_index_names_every_rendered_section_and_its_script():
    import readme_section

    text = docsgen.benchmarks_markdown()
    for page in readme_section.pages():
        for marker in docsgen.MARKER.findall(page.read_text(encoding="utf-8")):
            assert f"[{marker}](" in text, marker
    assert "`benchmarks/int8_speed.py`" in text and "../guides/int8.md#" in text


@pytest.fixture(scope="module")
def site_copy(tmp_path_factory) -> Path:
    """The site's sources in a scratch folder (docs, mkdocs.yml, the hook, the snippets' files)."""
    root = tmp_path_factory.mktemp("site")
    for name in ("docs", "tools", "docker", "edgekd", "benchmarks"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
    for name in ("mkdocs.yml", "README.md", "CONTRIBUTING.md"):
        shutil.copy(ROOT / name, root / name)
    return root


def _build(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([*MKDOCS, "--site-dir", str(root / "site")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_the_strict_build_passes_and_fails_on_a_broken_link_or_anchor(site_copy):
    built = _build(site_copy)
    assert built.returncode == 0, built.stderr
    reference = (site_copy / "site" / "reference" / "cli" / "index.html").read_text()
    assert "--teacher-weights" in reference and "edgekd predict" in reference
    assert "Gap closed" in (site_copy / "site" / "index.html").read_text()      # the README's demo, snipped in
    page = site_copy / "docs" / "guides" / "bench.md"
    original = page.read_text()
    for broken in ("[gone](no-such-page.md)", "[gone](ci.md#no-such-heading)"):
        page.write_text(original + f"\n{broken}\n")
        failed = _build(site_copy)
        assert failed.returncode != 0 and "no-such" in failed.stderr, broken
    page.write_text(original)


def test_the_api_is_one_import_and_import_edgekd_stays_light():
    code = ("import sys, edgekd; light = 'torch' not in sys.modules and 'numpy' not in sys.modules; "
            "from edgekd import distill, export, bench, sweep, Predictor; "
            "print(light, 'torch' in sys.modules, [f.__module__ for f in (distill, export, bench, sweep)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True False ['edgekd.app.api', 'edgekd.app.api', 'edgekd.app.api', 'edgekd.app.api']"


@pytest.mark.slow
def test_the_api_functions_return_their_documents(tmp_path):
    from conftest import FAST_BENCH, TINY

    from edgekd import bench, distill, export, sweep
    from edgekd.core.errors import ModelError
    from edgekd.core.schema import cv
    from edgekd.core.schema.export import ExportReport

    summary = distill(**{**TINY, "folds": 1, "out": str(tmp_path / "run")})
    assert summary == cv.read(tmp_path / "run")
    report = export(tmp_path / "run", formats=["onnx"], roles=["student"])
    assert ExportReport.from_json(report, "export") and [f["file"] for f in report["models"]] == ["student.onnx"]
    result = bench(tmp_path / "run" / "bundle", **FAST_BENCH)
    assert result["schema"] == "edgekd.bench" and result["models"][0]["file"] == "student.onnx"
    with pytest.raises(ModelError, match="resnet9"):
        sweep("resnet9", tmp_path / "sweep", data="digits")
    assert not (tmp_path / "sweep").exists()
