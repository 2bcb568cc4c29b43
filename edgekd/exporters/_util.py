"""Small helpers shared by the exporters: naming a failed op, reading a converter's error."""
from __future__ import annotations

import os
import re

from edgekd.core.errors import ExportError
from edgekd.core.quiet import quiet

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")


_OP_PATTERNS = [
    re.compile(r"Lowering not found: ([\w.:]+)"),                                          # litert-torch
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)', overload='(\w+)'"),  # torch.onnx
    re.compile(r"failed to legalize operation '([\w.]+)'"),                                # MLIR converters
    re.compile(r"'([\w.]+)' op [^\n]*(?:not supported|failed)"),
    re.compile(r"\b(aten::?[A-Za-z_][\w.]*)"),
    re.compile(r"\b(aten\.[A-Za-z_][\w.]*)"),
]
_NODE = re.compile(r"(?:While executing|Error when translating node) %(\w+)")
_WHERE = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')


def failed_op(exc: BaseException, log: str = "") -> tuple[str | None, str | None]:
    """(op, where) named by a converter's exception or log, best effort."""
    text = f"{exc}\n{log}"
    op = None
    for pattern in _OP_PATTERNS:
        match = pattern.search(text)
        if match:
            op = ".".join(g for g in match.groups() if g).rstrip(".:'")
            break
    where = None
    node = _NODE.search(text)
    if node:
        where = f"node %{node.group(1)}"
    frame = _WHERE.findall(str(exc))
    if frame:
        path, line, func = frame[-1]
        where = f"{where + ', ' if where else ''}{os.path.basename(path)}:{line} in {func}()"
    return op, where


def layer_of(module, op: str | None, example) -> str | None:
    """The PyTorch layer (module path and class) that calls ``op``, found in a torch.export graph."""
    if not op or module is None:
        return None
    parts = [p for p in op.replace("::", ".").split(".") if p not in ("torch", "ops", "aten", "prims", "default")]
    base = (parts[0] if parts else "").lstrip("_")
    try:
        import torch

        with quiet():
            graph = torch.export.export(module, (example,), strict=False).graph
    except Exception:
        return None
    for node in graph.nodes:
        target = str(node.target)
        if node.op == "call_function" and base and base in target:
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                path, cls = list(stack.values())[-1]
                cls_name = getattr(cls, "__name__", None) or str(cls).rsplit(".", 1)[-1].strip("'>")
                return f"{path or '<root>'} ({cls_name})"
            return "<root forward>"
    return None


def converter_error(tool: str, role: str, fmt: str, exc: BaseException, log: str = "",
                    module=None, example=None) -> ExportError:
    """An ExportError that names the op (and layer) the converter could not handle."""
    op, where = failed_op(exc, log)
    layer = layer_of(module, op, example)
    parts = [f"{tool} could not convert the {role} to {fmt}"]
    if op:
        parts.append(f"unsupported op {op}")
    if layer:
        parts.append(f"in layer {layer}")
    if where:
        parts.append(f"at {where}")
    if not op:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        parts.append(first[:300])
    return ExportError(": ".join(parts[:2]) + (", " + ", ".join(parts[2:]) if len(parts) > 2 else ""),
                       hint="replace that layer with a supported one (Conv2d, Linear, ReLU, pooling, mean), "
                            "or export to another format; --debug shows the traceback")


def fb_text(value) -> str:
    """A flatbuffer string (tensor, signature or input name) as text: LiteRT's object API gives bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)
