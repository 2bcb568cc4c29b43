"""Imports go at the top of each module. The exceptions, declared once here:

- a heavy library (HEAVY: absent on the device, or slow to load), or an edgekd module that loads one
  at its top level (directly or through the modules it imports there), may be imported inside the
  function that needs it, so ``import edgekd`` and the device side stay light;
- the command line and the Python API's functions (LAZY_COMMANDS) import a command's edgekd modules inside the function that runs
  it, so ``edgekd --help`` and ``edgekd bench`` start without torch or numpy;
- a module the command line loads when it starts (STARTUP, e.g. the distill configuration its
  options are made from) may import a module that loads numpy inside a function, for the same reason.

Anything else inside a function (the standard library, numpy, rich, a light edgekd module) is a
cycle dodged or a habit, and fails here.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HEAVY = {"torch", "torchao", "onnx", "onnxscript", "onnxsim", "onnxruntime", "litert_torch", "ai_edge_litert",
         "ai_edge_quantizer", "tflite_runtime", "flatbuffers", "matplotlib", "safetensors", "sklearn", "PIL", "psutil"}
#: files (or folders, ending in /) whose functions may import any edgekd module: the command line, and
#: the Python API's one function per command, which ``from edgekd import distill`` loads
LAZY_COMMANDS = ("edgekd/__init__.py", "edgekd/app/cli/", "edgekd/app/api.py")
#: the command line's package (within the scanned one; its modules all load at start), and what its
#: start must not load
STARTUP, NOT_AT_STARTUP = "app.cli", {"numpy"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> list[str]:
    """The modules an import statement loads (for ``from a import b``: a, and a.b when b is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    target = ".".join(filter(None, [base if node.level else "", node.module or ""]))
    return [target] + [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]


def _top_level(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module loads: its body, and inside its top-level if/try blocks (but not
    ``if TYPE_CHECKING:``, which never runs)."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]
    return out


def _in_functions(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    return [node for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]


def scan(package: Path) -> list[str]:
    """'file:line: module' for each function-level import the rule does not allow, in ``package``."""
    root = package.parent
    files = {module_name(p, root): p for p in sorted(package.rglob("*.py"))}
    modules = set(files)
    trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in files.items()}
    top = {m: {t for node in _top_level(tree) for t in _imported(node, m, files[m].name == "__init__.py", modules)}
           for m, tree in trees.items()}

    @functools.cache
    def loads(name: str) -> frozenset[str]:
        """Every module importing ``name`` runs: its parent packages, and their top-level imports, transitively."""
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            parts = current.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix not in seen:
                    seen.add(prefix)
                    todo += top.get(prefix, ())
        return frozenset(seen)

    def heavy(name: str, at_startup: bool = False) -> bool:
        return any(m.split(".")[0] in HEAVY | (NOT_AT_STARTUP if at_startup else set()) for m in loads(name))

    # the command line adds every command's module when it starts (cli/__init__.py's _add_commands)
    cli = f"{package.name}.{STARTUP}"
    startup = {m for name in modules if name == cli or name.startswith(cli + ".") for m in loads(name)}

    bad = []
    for m, tree in trees.items():
        where = files[m].relative_to(root).as_posix()
        commands = any(where == c or (c.endswith("/") and where.startswith(c)) for c in LAZY_COMMANDS)
        for node in _in_functions(tree):
            names = _imported(node, m, files[m].name == "__init__.py", modules)
            if any(heavy(name, m in startup) for name in names) or (commands and names[0].split(".")[0] == package.name):
                continue
            bad.append(f"{where}:{node.lineno}: {names[0]}")
    return bad


def test_every_function_level_import_is_a_heavy_one_or_a_command():
    bad = scan(ROOT / "edgekd")
    assert not bad, "move these imports to the top of their module (see this test's docstring):\n" + "\n".join(bad)


@pytest.mark.parametrize("body, allowed", [
    ("def f():\n    import json\n", False),                              # the standard library
    ("def f():\n    import numpy as np\n", False),                       # light: numpy is on the device
    ("def f():\n    from pkg.light import x\n", False),                  # a light module of the package
    ("def f():\n    import torch\n", True),                              # heavy
    ("def f():\n    from onnxruntime.quantization import q\n", True),    # heavy, a submodule
    ("def f():\n    from pkg.heavy import x\n", True),                   # loads torch at its top level
    ("def f():\n    from pkg.through import x\n", True),                 # … through another module
    ("def f():\n    from pkg import heavy\n", True),                     # … named as a submodule
])
def test_the_scan_tells_heavy_from_light(tmp_path, body, allowed):
    """The rule itself, on a package made here: the scan would catch a light import moved back into a
    function, and lets a heavy one be."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "light.py").write_text("import json\nx = 1\n")
    (pkg / "heavy.py").write_text("try:\n    import torch\nexcept ImportError:\n    torch = None\nx = 1\n")
    (pkg / "through.py").write_text("from pkg.heavy import x\n")
    (pkg / "user.py").write_text(body)
    bad = scan(pkg)
    if allowed:
        assert bad == []
    else:
        assert len(bad) == 1 and bad[0].startswith("pkg/user.py:2: ")


def test_what_the_command_line_loads_at_start_may_defer_numpy(tmp_path):
    """The distill configuration is loaded when the CLI starts (its options are made from it): there,
    and only there, a module that loads numpy may be imported inside a function."""
    pkg = tmp_path / "pkg"
    (pkg / "app" / "cli").mkdir(parents=True)
    for init in (pkg, pkg / "app", pkg / "app" / "cli"):
        (init / "__init__.py").write_text("")
    (pkg / "app" / "cli" / "run.py").write_text("from pkg.conf import x\n")
    (pkg / "arrays.py").write_text("import numpy as np\nx = 1\n")
    for name in ("conf", "elsewhere"):
        (pkg / f"{name}.py").write_text("x = 1\n\n\ndef f():\n    from pkg.arrays import x\n")
    assert scan(pkg) == ["pkg/elsewhere.py:5: pkg.arrays"]
