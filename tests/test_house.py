"""The house limits on edgekd's own code, checked mechanically: files ≤ 400 lines, functions ≤ 60."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import SLOW_FIXTURES

PACKAGE = Path(__file__).resolve().parents[1] / "edgekd"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def long_functions(text: str) -> list[str]:
    """The functions of a module's ``text`` longer than the limit, with their length."""
    functions = [node for node in ast.walk(ast.parse(text)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return [f"{fn.name} ({fn.end_lineno - fn.lineno + 1} lines)" for fn in functions
            if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES]


def test_the_package_is_found():
    assert len(MODULES) > 50 and PACKAGE / "core" / "errors.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_files_and_functions_stay_short(path):
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_FILE_LINES, f"{path.name} has more than {MAX_FILE_LINES} lines: split it"
    long = long_functions(text)
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_the_limit_catches_a_long_function_and_passes_one_at_the_limit():
    def module(statements: int) -> str:
        return "def f():\n" + "\n".join(f"    x{i} = {i}" for i in range(statements)) + "\n"
    assert long_functions(module(MAX_FUNCTION_LINES - 1)) == []
    assert long_functions(module(MAX_FUNCTION_LINES)) == [f"f ({MAX_FUNCTION_LINES + 1} lines)"]


def test_every_slow_fixture_is_defined():
    """conftest marks tests slow by the fixtures they use: a renamed fixture would silently move its
    tests into the fast lane."""
    sources = "\n".join(path.read_text(encoding="utf-8") for path in Path(__file__).parent.glob("*.py"))
    defined = set(re.findall(r"@pytest\.fixture[^\n]*\n(?:@[^\n]*\n)*def (\w+)\(", sources))
    assert SLOW_FIXTURES <= defined, f"not fixtures (renamed?): {sorted(SLOW_FIXTURES - defined)}"
