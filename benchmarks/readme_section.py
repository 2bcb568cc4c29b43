"""A documentation section that a benchmark script renders from its recorded results, between two
markers ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in README.md or in one page under docs/:
figures are rewritten, never hand-copied, and tests/test_readme.py checks each section equals its
script's rendering of the record."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from edgekd.core.fsutil import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def pages(root: Path = ROOT) -> list[Path]:
    """The files a section may live in: the README and every docs page."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def holder(name: str, root: Path = ROOT) -> Path:
    """The one file that holds section ``name`` (a section in two places would drift apart)."""
    start, _ = markers(name)
    found = [p for p in pages(root) if start in p.read_text(encoding="utf-8")]
    if len(found) != 1:
        raise LookupError(f"section {name!r} is in {len(found)} files, not one: {[str(p) for p in found]}")
    return found[0]


def section(text: str, name: str) -> str:
    start, end = markers(name)
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def rewrite(text: str, name: str, rendered: str) -> str:
    start, end = markers(name)
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{rendered}\n{end}{rest.split(end, 1)[1]}"


def rewrite_readme(name: str, rendered: str, page: Path | None = None) -> None:
    """Rewrite section ``name`` where it lives (``page``, or the one file that holds it)."""
    page = page or holder(name)
    atomic_write_text(page, rewrite(page.read_text(encoding="utf-8"), name, rendered))


def render_records(sections: dict[str, Path], render: Callable[[dict], str], page: Path | None = None) -> None:
    """Each section rewritten from its record (marker → results file), those recorded so far."""
    for name, record in sections.items():
        if record.is_file():
            rewrite_readme(name, render(json.loads(record.read_text())), page)


def write_record(path: Path, record: dict, section: str, render: Callable[[dict], str]) -> None:
    """Write a benchmark's record, rewrite its documentation section from it and print the section."""
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    render_records({section: path}, render)
    print(render(record))
