"""The documentation's generated parts: ``python tools/docsgen.py`` rewrites them, ``--check`` says
which are stale (tests/test_docs.py runs it, as tests/test_readme.py checks the benchmark sections).

A page holds a generated part between ``<!-- generated:NAME:start -->`` and ``<!-- generated:NAME:end -->``:
``commands`` (every command's usage, text and options, read from the click commands themselves, the
text ``--help`` prints), ``schemas`` (every field of every document, read off the TypedDicts and
dataclasses its reader checks it against) and ``benchmarks`` (every section a benchmark script
renders from its record, found where it lives). Written into the pages, not made at build time, so
they read the same on GitHub as on the site.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))      # the pages a rendered section may live in, one list
import readme_section  # noqa: E402
GENERATED_PART = re.compile(r"(<!-- generated:(\w+):start -->\n)(.*?\n)?(<!-- generated:\2:end -->)", re.S)
MARKER = re.compile(r"<!-- ([\w-]+):start -->")


def _cell(text: str) -> str:
    """Table-cell text: one line, no pipe, bracket or angle bracket read as Markdown or HTML (click's
    ``[x>=1]`` would be a cross-reference)."""
    text = " ".join(text.split()).replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _help_markdown(text: str) -> str:
    """A command's help: paragraphs as text, click's ``\\b`` blocks (the examples) as code."""
    parts = []
    for block in text.strip().split("\n\n"):
        if block.lstrip().startswith("\b"):
            lines = block.split("\n")[1:]
            indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
            parts.append("```\n" + "\n".join(x[indent:] for x in lines) + "\n```")
        else:
            parts.append(" ".join(block.split()))
    return "\n\n".join(parts)


def command_markdown(name: str, command: click.Command, parent: click.Context) -> str:
    ctx = click.Context(command, info_name=name, parent=parent, terminal_width=80)    # wrapped alike anywhere
    lines = [f"## `{ctx.command_path}`", "", "```", command.get_usage(ctx).removeprefix("Usage: "), "```", "",
             _help_markdown(command.help or ""), "", "| option | what it does |", "|---|---|"]
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record and record[1]:                 # the arguments are in the usage line
            lines.append(f"| `{record[0]}` | {_cell(record[1])} |")
    return "\n".join(lines)


def commands_markdown() -> str:
    """Every command of ``edgekd``, in the order ``edgekd --help`` lists them."""
    from edgekd.app.cli import cli

    root = click.Context(cli, info_name="edgekd", terminal_width=80)
    top = [f"| `{r[0]}` | {_cell(r[1])} |" for p in cli.get_params(root) if (r := p.get_help_record(root))]
    parts = ["\n".join(["## `edgekd`", "", "Options before the command:", "", "| option | what it does |", "|---|---|",
                         *top])]
    parts += [command_markdown(name, cli.commands[name], root) for name in cli.list_commands(root)]
    return "\n\n".join(parts)


def _script_of(section: str) -> Path | None:
    """The benchmark script that renders ``section`` (it names the marker in its code)."""
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if re.search(rf"[\"']{re.escape(section)}[\"']", script.read_text(encoding="utf-8")):
            return script
    return None


def _heading_anchor(text: str, at: int) -> str:
    """The anchor MkDocs gives the last heading before ``at`` (the toc's GitHub-style slug)."""
    import markdown
    from pymdownx.slugs import slugify

    heading = [m for m in re.finditer(r"^#+ (.+)$", text[:at], re.M)][-1].group(1)
    return slugify(case="lower")(markdown.markdown(heading)[3:-4], "-")


def benchmarks_markdown(page_dir: Path = ROOT / "docs" / "benchmarks") -> str:
    """One row per rendered section: its script, the script's first docstring paragraph, the page."""
    import os

    rows = ["| script | what it measures | where its table is |", "|---|---|---|"]
    for page in readme_section.pages(ROOT):
        text = page.read_text(encoding="utf-8")
        for marker in MARKER.finditer(text):
            script = _script_of(marker.group(1))
            doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) if script else None
            if script is None or doc is None:
                raise LookupError(f"{page.name}: no benchmark script (with a docstring) renders {marker.group(1)}")
            target = "index.md" if page == ROOT / "README.md" else page      # the home page shows the README's
            link = os.path.relpath(ROOT / "docs" / target if target == "index.md" else target, page_dir)
            anchor = "what-make-demo-shows" if target == "index.md" else _heading_anchor(text, marker.start())
            rows.append(f"| `{script.relative_to(ROOT)}` | {_cell(doc.split(chr(10) * 2)[0])} | "
                        f"[{marker.group(1)}]({link}#{anchor}) |")
    return "\n".join(rows)


#: the documents edgekd writes, each as its schema module declares it (title → module, shape)
DOCUMENTS = {"cv.json (run folder)": ("cv", "Document"), "model.json (each model of a run)": ("model", "ModelDoc"),
             "manifest.json (bundle)": ("manifest", "Manifest"), "export.json (bundle)": ("export", "ExportReport"),
             "bench.json": ("bench", "BenchDoc"), "sweep.json": ("sweep", "SweepDoc")}


def _shapes(hint) -> list[type]:
    """The declared shapes a hint holds: itself, or the shapes of a union (``X | None``, ``A | B``)."""
    import typing

    from edgekd.core.schema.fields import _is_shape, _unannotated

    base = _unannotated(hint)
    return [base] if _is_shape(base) else [a for a in typing.get_args(base) if _is_shape(_unannotated(a))]


def _field_rows(shape: type, prefix: str) -> list[str]:
    """One row per declared field of ``shape`` and of the shapes inside it (``a.b``, ``list[]``, ``map.*``)."""
    import typing

    from edgekd.core.schema.fields import _unannotated, describe, shape_keys

    hints, required = shape_keys(shape)
    rows = []
    for key, hint in hints.items():
        rows.append(f"| `{prefix}{key}` | {_cell(describe(hint))} | {'yes' if key in required else ''} |")
        base, inner = _unannotated(hint), {}
        args = typing.get_args(base)
        if typing.get_origin(base) is list and args:
            inner = {f"{prefix}{key}[].": _shapes(args[0])}
        elif typing.get_origin(base) is dict and len(args) == 2:
            inner = {f"{prefix}{key}.*.": _shapes(args[1])}
        else:
            inner = {f"{prefix}{key}.": _shapes(hint)}
        for below, shapes in inner.items():
            for kind in shapes:
                rows += [row for row in _field_rows(kind, below) if row not in rows]
    return rows


def schemas_markdown() -> str:
    """Every field of every document, read off its declaration (what the readers check)."""
    import importlib

    parts = []
    for title, (module, name) in DOCUMENTS.items():
        shape = getattr(importlib.import_module(f"edgekd.core.schema.{module}"), name)
        parts.append("\n".join([f"### {title}", "", f"Declared by `edgekd.core.schema.{module}.{name}`.", "",
                                 "| field | holds | required |", "|---|---|---|", *_field_rows(shape, "")]))
    return "\n\n".join(parts)


GENERATED = {"commands": commands_markdown, "benchmarks": benchmarks_markdown, "schemas": schemas_markdown}


def rewritten(text: str) -> str:
    """``text`` with each generated part made anew."""
    return GENERATED_PART.sub(lambda m: m.group(1) + GENERATED[m.group(2)]() + "\n" + m.group(4), text)


def stale_pages() -> list[Path]:
    """The docs pages whose generated parts differ from what the code makes now."""
    return [page for page in sorted((ROOT / "docs").rglob("*.md"))
            if GENERATED_PART.search(text := page.read_text(encoding="utf-8")) and rewritten(text) != text]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the stale pages; exit 1 if there are any")
    check = parser.parse_args(argv).check
    stale = stale_pages()
    for page in stale:
        if not check:
            page.write_text(rewritten(page.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"{'stale' if check else 'rewrote'}: {page.relative_to(ROOT)}")
    return 1 if stale and check else 0


if __name__ == "__main__":
    raise SystemExit(main())
