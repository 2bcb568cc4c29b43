"""bench.json has one schema module (edgekd/core/schema/bench.py): the README's bench.json section names
exactly its keys, object by object, and its one reader and writer agree with each other."""
from __future__ import annotations

import re
import types
import typing

import pytest
from readme_doc import README, readme_objects

from edgekd.core.errors import ConfigError
from edgekd.core.schema import SCHEMA_VERSION
from edgekd.core.schema import bench as schema



def schema_objects(cls=schema.BenchDoc, path: str = "") -> dict[str, list[type]]:
    """The same paths from the TypedDicts: path → the TypedDicts an object there may be (none for a
    free-form object such as device.packages)."""
    out: dict[str, list[type]] = {path: [cls]}
    for key, hint in typing.get_type_hints(cls).items():
        for inner, suffix in _typed_dicts(hint):
            sub = f"{path}.{key}".lstrip(".") + suffix
            found = schema_objects(inner, sub) if inner else {sub: []}
            for p, classes in found.items():
                out.setdefault(p, [])
                out[p] += [c for c in classes if c not in out[p]]
    return out


def _typed_dicts(hint, suffix: str = ""):
    if typing.is_typeddict(hint):
        yield hint, suffix
    elif hint is dict or typing.get_origin(hint) is dict:        # dict[str, Any]: free-form
        yield None, suffix
    elif typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            yield from _typed_dicts(arg, suffix)
    elif typing.get_origin(hint) is list:
        yield from _typed_dicts(typing.get_args(hint)[0], suffix + "[]")


def keys(cls) -> set[str]:
    return set(typing.get_type_hints(cls))


@pytest.mark.parametrize("path", [p for p, classes in schema_objects().items() if classes])
def test_the_readme_names_exactly_the_keys_of_each_bench_json_object(path):
    documented = readme_objects("bench.json")
    assert path in documented, f"the README's bench.json example has no object at '{path}'"
    names, elided = documented[path]
    candidates = [keys(c) for c in schema_objects()[path]]
    if elided:
        assert any(names <= k for k in candidates), (path, names, candidates)
    else:
        assert names in candidates, (path, names, candidates)


def test_the_readme_documents_no_object_the_schema_lacks():
    assert set(readme_objects("bench.json")) <= set(schema_objects())


def test_the_skipped_form_of_a_measurement_is_the_readmes_comment():
    text = README.read_text(encoding="utf-8")
    comment = re.search(r"// or (\{[^}]*\})", text[text.index("## `bench.json`"):]).group(1)
    assert set(re.findall(r'"(\w+)"\s*:', comment)) == keys(schema.Skipped)


def test_the_readme_reader_sees_what_is_there():
    """The checks above would pass vacuously on a reader that finds nothing."""
    objects = readme_objects("bench.json")
    assert {"schema", "models", "comparisons"} <= objects[""][0]
    assert "p50" in objects["models[].measurements[].latency_ms"][0]
    assert objects["models[].backend"][1] and not objects["models[].measurements[].memory"][1]


def minimal(**changes) -> dict:
    doc = {"schema": schema.SCHEMA, "schema_version": SCHEMA_VERSION, "models": [
        {"file": "m.onnx", "bytes": 10, "accuracy": None, "measurements": [
            {"threads": 1, "batch": 8, "skipped": "fixed batch"},
            {"threads": 1, "batch": 1, "latency_ms": {"p50": 0.5}, "memory": {"rss_peak_inference": 1 << 20}}]}]}
    return {**doc, **changes}


def test_what_to_json_writes_from_json_reads_back_and_nan_becomes_null():
    doc = minimal(comparisons=[{"speedup": float("nan")}])
    back = schema.from_json(schema.to_json(doc).encode())
    assert back["comparisons"] == [{"speedup": None}] and back["models"] == doc["models"]


@pytest.mark.parametrize("data, fragment", [
    pytest.param(b'{"schema": "edgekd.bench", "schema_version": 1, "models": [], "x": NaN}', "NaN", id="nan"),
    pytest.param(b'{"schema": "edgekd.bench", "schema": "edgekd.bench"}', "appears twice", id="repeated key"),
    pytest.param(minimal(schema="edgekd.manifest"), "is not an edgekd bench.json", id="other schema"),
    pytest.param(minimal(schema_version=SCHEMA_VERSION + 1), "this edgekd reads up to", id="newer"),
    pytest.param(minimal(models=[{"file": "m.onnx", "bytes": 0, "accuracy": None, "measurements": []}]),
                 "models[0].bytes must be a whole number > 0", id="no bytes"),
    pytest.param(minimal(target={"eval": []}), "target.eval must be an object", id="eval a list"),
])
def test_from_json_refuses_a_document_readers_cannot_use(data, fragment):
    with pytest.raises(ConfigError) as info:
        schema.from_json(data, "the test")
    assert fragment in info.value.message
