"""What the graph of a brought ``.pt2`` may do, decided from its serialized JSON before torch loads it.

A ``.pt2`` is a program: its nodes call ATen operators, and some of those reach outside the
tensors (``aten.from_file`` memory-maps any file, and an in-place ``fill_`` on the result writes
through to it; ``_print``, ``_local_scalar_dense``, random and storage operators ...). So a node
may call only an operator on the allow-list below — pure tensor arithmetic, views, and checks that
only raise — never an out= overload, and the schema torch has for it must agree (no random or
data-dependent tag). An in-place operator may write only to a tensor an allocating operator of the
graph made, never to a graph input, weight or constant or to anything that may share memory with
one (a view, or a cast that hands back its input). torch also writes the program's
names (inputs, weights, arguments) into the Python source it generates and ``exec``s for
``module()``: every name must be a plain Python name.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

# ATen operator packets (every overload but out=) that only compute tensors from tensors and numbers
# and return new tensors, never one of their arguments nor a view of one (batch_norm: in evaluation)
FRESH_ATEN = frozenset("""
    abs acos add addcdiv addcmul addmm amax amin any all arange argmax argmin asin atan atan2 avg_pool1d
    avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
    adaptive_max_pool2d baddbmm batch_norm bmm cat ceil celu clamp clamp_max clamp_min clip clone concat
    constant_pad_nd conv1d conv2d conv3d conv_transpose1d conv_transpose2d convolution copy cos cosh cumsum div
    elu embedding eq erf exp expm1 fill flip floor fmod frac full full_like gather ge gelu glu group_norm gt
    hardsigmoid hardswish hardtanh index_select layer_norm le leaky_relu lerp lift_fresh_copy linear log log10
    log1p log2 log_softmax _log_softmax logical_and logical_not logical_or logsumexp lt masked_fill matmul max
    max_pool1d max_pool2d max_pool2d_with_indices max_pool3d maximum mean min minimum mish mm mul
    native_group_norm native_layer_norm _native_batch_norm_legit_no_training ne neg new_full new_ones new_zeros
    ones ones_like pad pow prelu _prelu_kernel prod reciprocal relu relu6 remainder repeat roll round rsqrt rsub
    scalar_tensor selu sigmoid sign silu sin sinh softmax _softmax softplus sqrt square stack std sub sum tanh
    tile _to_copy trunc upsample_bilinear2d upsample_nearest2d var var_mean where zeros zeros_like
""".split())
# pure as well, but their result may be an argument itself or share its memory: views and reshapes
# (_unsafe_view declares no alias, yet is one), casts that hand back their input when it already has
# the type (to, type_as), contiguous, dropout in evaluation, pixel_shuffle (a reshape where torch has
# no kernel of its own), the in-place variants, and sizes
SHARING_ATEN = frozenset("""
    alias chunk contiguous detach dropout expand expand_as flatten movedim narrow permute pixel_shuffle
    pixel_unshuffle reshape reshape_as select slice split split_with_sizes squeeze sym_numel sym_size t to
    transpose type_as unbind unflatten _unsafe_view unsqueeze view view_as
    relu_ add_ sub_ mul_ div_ clamp_ clamp_min_ hardtanh_ hardswish_ hardsigmoid_ sigmoid_ tanh_ silu_
    leaky_relu_ elu_ gelu_ detach_
""".split())
# a check that returns nothing and only raises: torch.export writes it before each .to()/.float()
# of a forward
CHECK_ATEN = frozenset({"_assert_tensor_metadata"})
ALLOWED_ATEN = FRESH_ATEN | SHARING_ATEN | CHECK_ATEN
# pure only in evaluation mode (the argument must be the literal false, as torch.export writes after
# .eval()); torch tags both "maybe aliasing or mutating" for their training mode
EVAL_ONLY = {"batch_norm": "training", "dropout": "train"}
# what a node may call besides ATen: tuple indexing and integer arithmetic on symbolic sizes
SYMBOLIC = frozenset({"_operator.getitem", "_operator.add", "_operator.sub", "_operator.mul", "_operator.floordiv",
                      "_operator.mod", "_operator.truediv", "_operator.neg", "_operator.pos", "_operator.eq",
                      "_operator.ne", "_operator.lt", "_operator.le", "_operator.gt", "_operator.ge",
                      "_operator.and_", "_operator.or_", "math.trunc", "torch.sym_int", "torch.sym_float",
                      "torch.sym_max", "torch.sym_min", "torch.sym_not", "torch.sym_ite", "torch.sym_sqrt"})
REFUSED_TAGS = frozenset({"nondeterministic_seeded", "data_dependent_output", "dynamic_output_shape"})
INPUT_KINDS = frozenset({"user_input", "parameter", "buffer", "tensor_constant", "constant_input"})
NAME_KEYS = frozenset({"name", "as_name", "parameter_name", "buffer_name", "tensor_constant_name", "fqn"})
VALUE_TABLES = ("tensor_values", "sym_int_values", "sym_bool_values", "sym_float_values")
NAME = re.compile(r"[A-Za-z_]\w*(\.\w+)*|", re.ASCII)   # "" for an unnamed argument (torch writes some)
ATEN = re.compile(r"torch\.ops\.aten\.(\w+)\.(\w+)", re.ASCII)
# how edgekd calls a teacher: one positional tensor (torch's pytree spec of ``((x,), {})``)
ONE_TENSOR = [1, {"type": "builtins.tuple", "context": "null", "children_spec": [
    {"type": "builtins.tuple", "context": "null", "children_spec": [{"type": None, "context": None, "children_spec": []}]},
    {"type": "builtins.dict", "context": "[]", "children_spec": []}]}]


def graph_problem(program: dict) -> str | None:
    """What a serialized ExportedProgram does that edgekd does not run, as a fragment after the
    file's name ("uses operator aten.from_file.default, ..."), or None."""
    module = program.get("graph_module")
    if not isinstance(module, dict) or not isinstance(module.get("graph"), dict):
        return "holds no graph"
    return (_signature_problem(module.get("signature"), module.get("module_call_graph"))
            or _walk_problem(program) or _write_problem(module["graph"]))


def _signature_problem(signature, call_graph) -> str | None:
    """Inputs of the kinds a plain module has; outputs that are only results (no input, weight
    or buffer the program changes); one tensor in, as edgekd calls it."""
    if not isinstance(signature, dict) or not isinstance(call_graph, list) or not call_graph:
        return "holds no graph signature"
    for spec in signature.get("input_specs") or []:
        kind = next(iter(spec), None) if isinstance(spec, dict) else None
        if kind not in INPUT_KINDS:
            return f"takes a '{kind}' input, which edgekd does not run (a .pt2 teacher takes tensors and weights)"
    for spec in signature.get("output_specs") or []:
        kind = next(iter(spec), None) if isinstance(spec, dict) else None
        if kind != "user_output":
            return (f"has a '{kind}' output: the program changes its input, weights or buffers, which edgekd "
                    "does not run (export the teacher after model.eval())")
    spec = call_graph[0].get("signature") if isinstance(call_graph[0], dict) else None
    try:
        takes_one_tensor = isinstance(spec, dict) and json.loads(spec["in_spec"]) == ONE_TENSOR
    except (TypeError, KeyError, ValueError, RecursionError):
        takes_one_tensor = False
    return None if takes_one_tensor else "does not take one tensor (edgekd calls a teacher with one batch)"


def json_entries(tree) -> Iterator[tuple[dict, str, Any]]:
    """Every (object, key, value) of a JSON tree at any depth, in the document's order (so the first
    bad node is the one named); a loop, not recursion, however deep the file nests."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(item.values()))
            for key, value in item.items():
                yield item, key, value


def _walk_problem(program: dict) -> str | None:
    """Every operator named anywhere (nodes of nested graphs too) and every name torch writes into code."""
    for item, key, value in json_entries(program):
        if key == "as_graph":
            return "holds a nested graph (torch.cond, torch.map or another higher-order operator), which edgekd does not run"
        if key in ("target", "as_operator"):
            problem = _operator_problem(value, item.get("inputs"))
            if problem:
                return problem
        names = list(value) if key in VALUE_TABLES and isinstance(value, dict) else []
        names += value if key == "forward_arg_names" and isinstance(value, list) else []
        names += [value] if key in NAME_KEYS else []
        odd = next((n for n in names if not isinstance(n, str) or not NAME.fullmatch(n)), None)
        if odd is not None:
            return f"names a value {str(odd)[:80]!r}, which is not a plain Python name (torch writes names into code)"
    return None


def _operator_problem(target, inputs) -> str | None:
    op = resolve(target)
    if op is None:
        return None if target in SYMBOLIC else f"uses operator {_short(target)}, which edgekd does not run"
    if any(name != "self" or not op.overloadpacket.__name__.endswith("_") for name in _writes(op)):
        # an out= overload writes its result into a tensor it is given; torch.export never writes one
        return f"uses operator {_short(target)}, which writes into an out= argument and edgekd does not run"
    tags = _tags(op)
    condition = EVAL_ONLY.get(op.overloadpacket.__name__)
    if condition:
        given = _arguments(inputs).get(condition)
        if not (given == {"as_bool": False} and given["as_bool"] is False):
            return f"uses operator {_short(target)} with {condition} not false, which edgekd does not run"
    elif tags & REFUSED_TAGS:
        return f"uses operator {_short(target)} ({', '.join(sorted(tags & REFUSED_TAGS))}), which edgekd does not run"
    return None


def _write_problem(graph: dict) -> str | None:
    """An operator may write in place only to a tensor this graph made: never to one of its inputs
    (the batch edgekd passes, a weight, a buffer, a constant) nor to anything that may share memory
    with one. Only an operator known to allocate its result (FRESH_ATEN) makes a fresh tensor; the
    result of any other node counts as its arguments, whatever its schema declares."""
    outside = _names(graph.get("inputs"))
    defined = set(outside)
    nodes = graph.get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        node = node if isinstance(node, dict) else {}
        op, arguments, results = resolve(node.get("target")), _arguments(node.get("inputs")), _names(node.get("outputs"))
        if results & defined:
            return f"names the value '{sorted(results & defined)[0]}' twice"
        defined |= results
        if op is not None and any(_names(arguments.get(name)) & outside for name in _writes(op)):
            return (f"uses operator {_short(node['target'])} to write in place to a graph input, weight or "
                    "constant, which edgekd does not run")
        fresh = op is not None and op.overloadpacket.__name__ in FRESH_ATEN
        if not fresh and _names(list(arguments.values())) & outside:
            outside |= results
    return None


def _arguments(inputs) -> dict:
    """A node's arguments by name, as torch's deserializer reads them (the last of a repeated name)."""
    return {i.get("name"): i.get("arg") for i in inputs if isinstance(i, dict)} if isinstance(inputs, list) else {}


def _names(value) -> set:
    """Every value name in an argument tree (tensors, symbolic sizes), at any depth: more, never fewer."""
    return {inner for _, key, inner in json_entries(value) if key in ("name", "as_name") and isinstance(inner, str)}


def resolve(target):
    """The ATen overload an allowed target string names (as torch's deserializer resolves it), else None."""
    import torch

    match = ATEN.fullmatch(target) if isinstance(target, str) else None
    if not match or match[1] not in ALLOWED_ATEN:
        return None
    try:
        op = getattr(getattr(torch.ops.aten, match[1]), match[2])
    except (AttributeError, RuntimeError):
        return None
    return op if isinstance(op, torch._ops.OpOverload) and op.namespace == "aten" else None


def _short(target) -> str:
    text = str(target)[:80]
    return text[len("torch.ops."):] if text.startswith("torch.ops.") else text


def _tags(op) -> set[str]:
    return {str(tag).split(".")[-1] for tag in op.tags}


def _writes(op) -> list[str]:
    """The arguments an operator writes to, by its schema (``Tensor(a!)``)."""
    return [a.name for a in op._schema.arguments if a.alias_info is not None and a.alias_info.is_write]
