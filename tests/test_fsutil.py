"""Atomic output: complete files or nothing, normal permissions, no overwrite without force."""
from __future__ import annotations

import os
import stat

import pytest

from edgekd.errors import EdgeKDError
from edgekd.fsutil import atomic_write_bytes, atomic_write_json, staged_dir


def test_written_file_has_the_mode_open_would_give(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert path.read_text() == '{\n  "a": 1\n}\n'


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")          # fails inside the write
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_staged_dir_replaces_only_on_success(tmp_path):
    final = tmp_path / "bundle"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(final, True, "bundle") as stage:
        (stage / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert [p.name for p in final.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]   # the staging folder is gone

    with staged_dir(final, True, "bundle") as stage:
        (stage / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def test_staged_dir_refuses_an_existing_folder_without_force(tmp_path):
    (tmp_path / "bundle").mkdir()
    with pytest.raises(EdgeKDError, match="already exists"), staged_dir(tmp_path / "bundle", False, "bundle"):
        pass
