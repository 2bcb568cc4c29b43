"""The house limits on edgekd's own code, checked mechanically: files ≤ 400 lines, functions ≤ 60."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgekd"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _functions(tree: ast.AST):
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_the_package_is_found():
    assert len(MODULES) > 50 and PACKAGE / "core" / "errors.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_files_and_functions_stay_short(path):
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_FILE_LINES, f"{path.name} has more than {MAX_FILE_LINES} lines: split it"
    long = [f"{fn.name} ({fn.end_lineno - fn.lineno + 1} lines)" for fn in _functions(ast.parse(text))
            if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_the_limits_catch_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES + 1))
    (fn,) = _functions(ast.parse(f"def f():\n{body}\n"))
    assert fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
