"""The tiers as layers: pyproject.toml's import-linter contracts hold on the package, and they catch a
wrong import (run on a copy of the package with one bad line added; the real tree is never touched)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the console script installed beside this interpreter (pyproject's dev extra)
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under ``root``: PYTHONPATH puts that copy ahead of the editable install
    (grimp finds the package as Python would), ``--no-cache``: nothing of another tree is reused."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], capture_output=True, text=True,
                          cwd=root, env=env, timeout=300)


def _contract(kind: str, forbids: str | None = None) -> str:
    """The name of the one contract of type ``kind`` (forbidding the module ``forbids``)."""
    [name] = [c["name"] for c in CONTRACTS if c["type"] == kind and
              (forbids is None or forbids in c.get("forbidden_modules", []))]
    return name


def test_the_package_keeps_every_contract():
    res = _lint_imports(REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in res.stdout


@pytest.mark.parametrize("module,line,contract", [
    ("edgekd/device/bench/measure.py", "import torch", _contract("forbidden", "torch")),
    ("edgekd/core/numbers.py", "from edgekd.app.cli import main", _contract("layers")),
    ("edgekd/core/bundle.py", "import onnxruntime", _contract("forbidden", "onnxruntime")),
    ("edgekd/train/distill/losses.py", "from edgekd.train.config import DistillConfig",
     _contract("forbidden", "edgekd.train.config")),
])
def test_a_wrong_import_breaks_its_contract(tmp_path, module, line, contract):
    shutil.copytree(REPO / "edgekd", tmp_path / "edgekd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    assert _lint_imports(tmp_path).returncode == 0        # the copy as it is: every contract kept
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # the wrong import\n")
    res = _lint_imports(tmp_path)
    assert res.returncode != 0, res.stdout
    assert f"{contract} BROKEN" in res.stdout, res.stdout
    assert f"{module.removesuffix('.py').replace('/', '.')} -> " in res.stdout     # the line is named
