"""Model checkpoints: ``model.safetensors`` (weights, never pickle) + ``model.json``, the document
that rebuilds the model without the run (its shape and reader: ``edgekd.core.schema.model``)."""
from __future__ import annotations

import ast
import io
import json
import logging
import re
import zipfile
import zlib
from collections import Counter
from pathlib import Path

from edgekd.core.errors import ModelError
from edgekd.core.fsutil import atomic_write_bytes, atomic_write_text
from edgekd.train.pt2_graph import graph_problem, json_entries
from edgekd.core.schema import SCHEMA_VERSION
from edgekd.core.schema import model as model_schema
from edgekd.core.schema.model import MODEL_FILE, ModelDoc

WEIGHTS = "model.safetensors"
SPEC = MODEL_FILE
PT2_HINT = "the file is corrupt or not a torch.export program (torch.export.save)"
PT2_PURE_HINT = ("a .pt2 teacher may only compute with pure tensor operators (no files, storage, random numbers, "
                 "printing or writes to its inputs and weights); export the teacher to ONNX "
                 "(torch.onnx.export) and bring the .onnx file")


def save_weights(path: Path, model) -> None:
    """The module's state dict as one safetensors file (CPU tensors, written atomically)."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(Path(path), save(state))


def save_model(folder: Path, model, spec: dict) -> None:
    """A model folder: the weights and the ``model.json`` that rebuilds the module."""
    folder = Path(folder)
    save_weights(folder / WEIGHTS, model)
    write_spec(folder, {"schema_version": SCHEMA_VERSION, "format": "safetensors", **spec})


def write_spec(folder: Path, spec: dict) -> None:
    """``folder``'s model.json, checked by its reader's rules before it is written."""
    checked = model_schema.from_json(spec, f"the {SPEC} being written")
    atomic_write_text(Path(folder) / SPEC, model_schema.to_json(checked))


def read_spec(folder: Path) -> ModelDoc:
    """The model.json of ``folder``, checked (``edgekd.core.schema.model``)."""
    return model_schema.read(folder)


def load_model(folder: Path, trust_code: bool = False):
    """Rebuild the module from ``model.json`` and load its safetensors weights (eval mode). A user
    model's spec (``FILE.py:FACTORY``) would import and call its code again, so it is refused unless
    the caller was told to trust it: a run folder is a file edgekd loads, and a file edgekd loads
    never runs code on its own (a copied or hostile run could name any importable function)."""
    from edgekd.train.models import build
    from edgekd.train.models.user import parse_user_spec

    folder = Path(folder)
    spec = read_spec(folder)
    if not trust_code and parse_user_spec(spec["arch"]) is not None:
        # the hint names no command that runs the spec: the folder may be someone else's
        raise ModelError(f"'{folder / SPEC}' names Python code to run ({spec['arch']!r}); edgekd runs code "
                         "named in a run folder only when told to trust it",
                         hint="read the code it names first; if you made this run, pass --trust-model-code "
                              f"(export, or distill and sweep with --teacher-from); its weights alone are "
                              f"'{folder / WEIGHTS}' (--teacher-weights, with a --teacher of your own)")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"no {WEIGHTS} in '{folder}'")
    try:
        model = build(spec["arch"], tuple(spec["input"]["shape"]), spec["num_classes"])
    except ModelError as exc:
        raise ModelError(f"cannot rebuild the model of '{folder / SPEC}': {exc.message}", hint=exc.hint) from None
    load_state(model, weights, f"the architecture '{spec['arch']}' in {SPEC}")
    model.eval()
    return model, spec


def load_state(model, path: Path, what: str, hint: str | None = None) -> None:
    """A safetensors state dict (never a pickle) into ``model``; one that does not fit is one
    ModelError naming the first tensor that differs, in the module's own order."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"'{path}' is not a readable safetensors file: {exc}",
                         hint="the file is corrupt, truncated or not safetensors (edgekd never unpickles); save "
                              "one with safetensors.torch.save_file(model.state_dict(), PATH)") from None
    problem = _state_mismatch(model.state_dict(), state)
    if problem:
        raise ModelError(f"'{path}' does not match {what}: {problem}", hint=hint)
    model.load_state_dict(state, strict=True)


def _state_mismatch(expected: dict, given: dict) -> str | None:
    for name, tensor in expected.items():
        if name not in given:
            return f"it has no tensor '{name}'"
        if tuple(given[name].shape) != tuple(tensor.shape):
            return (f"tensor '{name}' has shape {list(given[name].shape)} in the file, "
                    f"{list(tensor.shape)} in the model")
    extra = next((name for name in given if name not in expected), None)
    return f"it holds tensor '{extra}', which the model does not have" if extra else None


def load_program(path: Path, what: str):
    """A ``torch.export`` .pt2 program. torch.export.load unpickles (weights or constants marked
    ``use_pickle``, custom objects, sample inputs), loads compiled AOTInductor code, and hands
    the program's shape expressions to ``sympy.sympify`` (an ``eval``), and the program runs any
    operator its graph names: so torch only ever sees an archive rebuilt in memory from entries
    checked here (``_checked_archive``: no pickles, plain shape expressions, and only the pure
    operators of ``pt2_graph``). A bad archive is a
    ModelError; torch also logs the failure as a warning with a traceback, which is kept off the
    terminal so the user reads edgekd's one line."""
    import torch

    archive = _checked_archive(Path(path), what)
    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return torch.export.load(archive)
    except Exception as exc:  # torch raises several types for a bad archive
        raise ModelError(f"cannot load {what} '{path}': {str(exc).splitlines()[0][:200]}",
                         hint=PT2_HINT) from None
    finally:
        log.setLevel(level)


# --- what a .pt2 may hold ------------------------------------------------------------------------
# Entries torch.export.save writes for a plain module (under the archive's root folder) that torch
# reads as raw bytes or as JSON; anything else (pickled constants and custom objects, legacy
# pickled state dicts, AOTInductor shared libraries, ExecuTorch/MTIA payloads) is refused.
PT2_RAW = re.compile(r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                     r"|data/weights/weight_\d+|data/constants/tensor_\d+|extra/[^/]+")
PT2_CONFIG = re.compile(r"data/(weights/\w+_weights|constants/\w+_constants)_config\.json")
PT2_PROGRAM = re.compile(r"models/\w+\.json")
PT2_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/\w+\.pt")
# what a shape expression may name when torch hands it to sympy.sympify (which evals it)
SYMPY_NAMES = frozenset({"Symbol", "Integer", "Float", "Rational", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And",
    "Or", "Not", "Max", "Min", "Abs", "Mul", "Add", "Pow", "True", "False", "oo", "FloorDiv",
    "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift",
    "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity"})
SYMBOL_FLAGS = frozenset({"positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero",
                          "nonzero"})
SYMBOL_NAME = re.compile(r"[a-z]+\d+")
EXPRESSION_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Load,
                    ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
NEVER = "edgekd never unpickles or runs code from a model file"
MAX_EXPRESSION = 10_000   # characters of one shape expression (torch writes a few dozen)


def _checked_archive(path: Path, what: str) -> io.BytesIO:
    """The archive rebuilt in memory from its checked entries, so torch reads exactly the bytes
    that were checked (no second parse of the file that could see other entries). The sample
    inputs (always a pickle, and torch retries a failed safe load with ``weights_only=False``)
    are left empty: nothing is unpickled at all, and without them ``module()`` builds no guard
    function (the program's ``guards_code``, which torch would ``exec``)."""
    try:
        source = zipfile.ZipFile(path)
        entries = source.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"cannot load {what} '{path}': {exc}", hint=PT2_HINT) from None
    names = [entry.filename for entry in entries]
    counts = Counter(names)
    root = names[0].split("/")[0] + "/" if names else ""
    rebuilt = io.BytesIO()
    with source, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_STORED) as target:
        for entry in entries:
            name = entry.filename[len(root):] if entry.filename.startswith(root) else ""
            problem = ("an entry twice" if counts[entry.filename] > 1 else _entry_problem(name)
                       or (entry.compress_type != zipfile.ZIP_STORED and "a compressed entry (a possible zip bomb: "
                           "torch.export.save stores every entry)")
                       or (entry.flag_bits & 0x1 and "an encrypted entry"))
            if problem:
                raise ModelError(f"'{path}' holds {problem} ({entry.filename}); {NEVER}",
                                 hint="bring the teacher as a plain torch.export.save of an nn.Module, or as ONNX")
            try:
                data = source.read(entry)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise ModelError(f"cannot load {what} '{path}': {entry.filename}: {exc}", hint=PT2_HINT) from None
            target.writestr(entry.filename, _checked_entry(path, name, data))
    rebuilt.seek(0)
    return rebuilt


def _entry_problem(name: str) -> str | None:
    if any(p.fullmatch(name) for p in (PT2_RAW, PT2_CONFIG, PT2_PROGRAM, PT2_SAMPLE_INPUTS)):
        return None
    if name.startswith("data/aotinductor/") or name.endswith(".so"):
        return "compiled code that torch would load"
    if name.endswith((".pt", ".pkl")) or "custom_obj_" in name or "opaque_obj_" in name:
        return "an entry that would be unpickled"
    return "an entry that torch.export.save does not write for a plain module"


def _checked_entry(path: Path, name: str, data: bytes) -> bytes:
    """The bytes torch will read for one entry: raw data as is, JSON re-encoded from what was checked."""
    if PT2_SAMPLE_INPUTS.fullmatch(name):
        return b""
    if not (PT2_CONFIG.fullmatch(name) or PT2_PROGRAM.fullmatch(name)):
        return data
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, an over-long integer, deep nesting
        raise ModelError(f"'{path}' holds an entry that is not valid JSON ({name}): {exc}", hint=PT2_HINT) from None
    if PT2_CONFIG.fullmatch(name):
        problem = _payload_problem(document, name.split("/")[1])
    else:
        problem = _program_problem(document)
    if problem:
        raise ModelError(f"'{path}' holds {problem}; {NEVER}",
                         hint="bring the teacher as a plain torch.export.save of an nn.Module, or as ONNX")
    if PT2_PROGRAM.fullmatch(name):
        problem = graph_problem(document)
        if problem:
            raise ModelError(f"'{path}' {problem}", hint=PT2_PURE_HINT)
        document["guards_code"] = []
    return json.dumps(document).encode()


def _payload_problem(config, folder: str) -> str | None:
    """A weights or constants config: every entry raw tensor bytes (``use_pickle`` false)."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        return f"a {folder} config that is not a JSON object of entries"
    prefix = "weight_" if folder == "weights" else "tensor_"
    for meta in entries.values():
        file = meta.get("path_name") if isinstance(meta, dict) else None
        if not isinstance(file, str) or meta.get("use_pickle") is not False or not re.fullmatch(prefix + r"\d+", file):
            return f"an entry that would be unpickled (data/{folder}/{file})"
    return None


def _program_problem(program) -> str | None:
    """A serialized program: shape expressions sympy can evaluate harmlessly and integer ranges
    (what it may call: ``pt2_graph.graph_problem``)."""
    if not isinstance(program, dict):
        return "a program that is not a JSON object"
    ranges = program.get("range_constraints") or {}
    if not isinstance(ranges, dict) or not all(
            isinstance(r, dict) and all(_int_or_none(r.get(k)) for k in ("min_val", "max_val")) for r in ranges.values()):
        return "range constraints that are not integers"
    for _, key, value in json_entries(program):
        if key == "expr_str" and not _harmless_expression(value):
            return f"a shape expression that sympy would evaluate as code ({str(value)[:80]!r})"
    return None


def _int_or_none(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _harmless_expression(text) -> bool:
    """Arithmetic over symbols (``s0``), numbers and sympy's own functions: no attributes,
    subscripts, lambdas or other names, so ``sympify``'s eval can only build an expression."""
    if not isinstance(text, str) or len(text) > MAX_EXPRESSION:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            ok = node.id in SYMPY_NAMES or bool(SYMBOL_NAME.fullmatch(node.id))
        elif isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name)  # the name itself is checked as a Name
        elif isinstance(node, ast.keyword):
            ok = node.arg in SYMBOL_FLAGS and isinstance(node.value, ast.Constant) and isinstance(node.value.value, bool)
        elif isinstance(node, ast.Pow):     # 9**9**9**9 would keep sympify busy for ever; torch writes PowByNatural
            ok = False
        elif isinstance(node, ast.Constant):
            ok = (isinstance(node.value, (int, float)) and abs(node.value) < 2**63) or (isinstance(node.value, str) and bool(SYMBOL_NAME.fullmatch(node.value)))
        else:
            ok = isinstance(node, EXPRESSION_NODES)
        if not ok:
            return False
    return True
