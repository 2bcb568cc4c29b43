"""ONNX external data, found without torch or onnx: a bundle's model (or a brought teacher) must be
one self-contained file, since an external-data file would lie outside the manifest's sha256 check
(and the device may have no onnx package). Reads the protobuf wire format along the only paths that lead to a
tensor; every other field is skipped unread."""
from __future__ import annotations

import mmap
import os
from pathlib import Path

from edgekd.core.errors import BundleError

#: onnx.proto's field numbers on every path from a ModelProto down to a TensorProto: the only
#: places a tensor (and so external data) can be. Other fields are skipped unread.
_ONNX_FIELDS = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 13, 14, 1      # TensorProto.external_data / data_location
_PROTO_DEPTH = 100                                           # protobuf's own recursion limit


class _Malformed(Exception):
    pass


def refuse_external_data(path: Path, name: str, error: type = BundleError, what: str = "bundle model") -> None:
    """An ONNX model edgekd reads must be one self-contained file (export writes it with
    external_data=False): in a bundle, external data would be read from files the manifest need not
    list; a brought teacher's would be left behind, since only the .onnx is copied into a run.

    Reads the protobuf wire format itself (torch- and onnx-free, like all of bench): any tensor
    whose data_location is EXTERNAL or that carries external_data entries is refused, as is a file
    that is not a well-formed protobuf (onnxruntime would not load it either)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return                  # nothing to scan; the runtime refuses an empty model
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                locations = _external_locations(buf)
            except _Malformed:
                raise error(f"{what} '{name}' is not a well-formed ONNX file") from None
    if locations:
        raise error(f"{what} '{name}' keeps tensors in separate data files ({', '.join(locations)[:200]}); "
                    "edgekd reads only self-contained ONNX files (a bundle: only its listed, hashed files)",
                    hint="export again (edgekd writes self-contained ONNX), or save the model with "
                         "onnx.save_model(model, path, save_as_external_data=False)")


def _external_locations(buf) -> list[str]:
    """The external-data file names the model's tensors point at ("?" for one that names none)."""
    found: set[str | None] = set()
    todo = [("model", 0, len(buf), 0)]
    while todo:
        kind, pos, end, depth = todo.pop()
        if depth > _PROTO_DEPTH:
            raise _Malformed
        while pos < end:
            number, wire, value, start, pos = _next_field(buf, pos, end)
            if kind == "tensor":
                # protobuf reads an enum as int32, so only the low 32 bits count
                if number == _DATA_LOCATION and wire == 0 and value is not None and value & 0xFFFFFFFF == _EXTERNAL:
                    found.add(None)
                elif number == _EXTERNAL_DATA and wire == 2:
                    found.add(_location(buf, start, pos))
            elif wire == 2 and number in _ONNX_FIELDS[kind]:
                todo.append((_ONNX_FIELDS[kind][number], start, pos, depth + 1))
    named = sorted(f for f in found if f)
    return named or (["?"] if found else [])


def _location(buf, pos: int, end: int) -> str | None:
    """The value of one StringStringEntryProto (key 1, value 2) whose key is "location"."""
    key = value = None
    while pos < end:
        number, wire, _, start, pos = _next_field(buf, pos, end)
        if wire == 2 and number in (1, 2):
            text = bytes(buf[start:pos]).decode("utf-8", "replace")
            key, value = (text, value) if number == 1 else (key, text)
    return value if key == "location" else None


def _next_field(buf, pos: int, end: int) -> tuple[int, int, int | None, int, int]:
    """One protobuf field at ``pos``: (field number, wire type, varint value, payload start, next pos)."""
    key, pos = _varint(buf, pos, end)
    number, wire = key >> 3, key & 7
    value, start = None, pos
    if wire == 0:
        value, pos = _varint(buf, pos, end)
    elif wire == 2:
        length, start = _varint(buf, pos, end)
        pos = start + length
    elif wire in (1, 5):
        pos += 8 if wire == 1 else 4
    else:                   # groups: ONNX has none
        raise _Malformed
    if pos > end:
        raise _Malformed
    return number, wire, value, start, pos


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 70:
        if pos >= end:
            raise _Malformed
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Malformed
