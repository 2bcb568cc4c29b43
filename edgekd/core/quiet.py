"""Run noisy library code with its output captured: Python's and the native libraries' alike.

Converters (torch.export, litert-torch, onnx) print to file descriptors 1 and 2 from C++; the
captured text is kept for the error message instead of flooding the user's terminal."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterator


class Captured:
    text = ""


@contextlib.contextmanager
def quiet() -> Iterator[Captured]:
    """Run converter code with stdout/stderr (file descriptors 1 and 2, so native logs too)
    and Python warnings/logging captured; the text is kept for error messages."""
    captured = Captured()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    root = logging.getLogger()
    old_level = root.level
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            root.setLevel(old_level)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
