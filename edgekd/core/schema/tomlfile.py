"""TOML for the files a user hands edgekd (a distill or sweep config, a budget). Torch-free.

tomllib recurses once per nested array or inline table: a file of a few thousand ``[`` ended in a
RecursionError with a 3,000-line traceback. Every such file is parsed here, into one error.
"""
from __future__ import annotations

from typing import Any

from edgekd.core.compat import tomllib


def parse_toml(data: bytes, where: str, what: str, error: type) -> dict[str, Any]:
    """The document in ``data``; text that is not UTF-8, invalid or too deeply nested TOML is one
    ``error`` naming ``where``."""
    try:
        doc: dict[str, Any] = tomllib.loads(data.decode("utf-8"))   # tomli on 3.10 has no types here
        return doc
    except RecursionError:
        raise error(f"{where} is nested too deeply to be a {what}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{where} is not valid TOML: {exc}") from None
