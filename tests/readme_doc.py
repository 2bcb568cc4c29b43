"""The jsonc examples (docs/reference/schemas.md) of edgekd's documents, read object by object, for the tests that hold
them to the schema modules (tests/test_schema.py, tests/test_bench_schema.py)."""
from __future__ import annotations

import re
from pathlib import Path

#: the documentation page of the documents' shapes
README = Path(__file__).resolve().parent / ".." / "docs" / "reference" / "schemas.md"
#: a README object holding a bare "…" where a key would be lists only some of its keys
ELIDED = "…"


def readme_objects(section: str) -> dict[str, tuple[set[str], bool]]:
    """Every object of the README's jsonc example under ``### `section```: path ("", "models[]", "models[].memory") →
    (its keys, whether it elides some). Comments are left out (the skipped form is read apart)."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## `{section}`")
    block = text[text.index("```jsonc", start) + 8:]
    block = re.sub(r"//[^\n]*", "", block[:block.index("```")])
    objects: dict[str, tuple[set[str], bool]] = {}
    stack: list[str] = []            # the path of each open bracket
    key = None
    for token in re.finditer(r'"(\w+)"\s*:|[{\[\]}]|(?<=[{,])\s*…\s*(?=[,}])', block):
        if token.group(1):
            key = token.group(1)
            objects[stack[-1]][0].add(key)
        elif token.group() in "{[":
            parent = stack[-1] if stack else None
            path = "" if parent is None else (f"{parent}[]" if key is None else f"{parent}.{key}".lstrip("."))
            stack.append(path)
            if token.group() == "{":
                objects.setdefault(path, (set(), False))
            key = None
        elif token.group() in "]}":
            stack.pop()
            key = None
        else:
            keys, _ = objects[stack[-1]]
            objects[stack[-1]] = (keys, True)
    return objects
