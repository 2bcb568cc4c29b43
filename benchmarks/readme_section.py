"""A README section that a benchmark script renders from its recorded results, between two markers
``<!-- NAME:start -->`` and ``<!-- NAME:end -->``: figures are rewritten, never hand-copied, and
tests/test_readme.py checks each section equals its script's rendering of the record."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from edgekd.core.fsutil import atomic_write_text

README = Path(__file__).resolve().parents[1] / "README.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def section(text: str, name: str) -> str:
    start, end = markers(name)
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def rewrite(text: str, name: str, rendered: str) -> str:
    start, end = markers(name)
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{rendered}\n{end}{rest.split(end, 1)[1]}"


def rewrite_readme(name: str, rendered: str, readme: Path = README) -> None:
    atomic_write_text(readme, rewrite(readme.read_text(), name, rendered))


def render_records(sections: dict[str, Path], render: Callable[[dict], str], readme: Path = README) -> None:
    """Each section rewritten from its record (README marker → results file), those recorded so far."""
    for name, record in sections.items():
        if record.is_file():
            rewrite_readme(name, render(json.loads(record.read_text())), readme)


def write_record(path: Path, record: dict, section: str, render: Callable[[dict], str]) -> None:
    """Write a benchmark's record, rewrite its README section from it and print the section."""
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    render_records({section: path}, render)
    print(render(record))
