"""Atomic output: complete files or nothing, normal permissions, no overwrite without force."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.core.errors import EdgeKDError
from edgekd.core.fsutil import OWN_FOLDERS, atomic_write_bytes, atomic_write_json, refuse_existing, staged_dir


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
    old = sorted(_an_earlier(final, "bundle folder"))
    with pytest.raises(RuntimeError), staged_dir(final, True, "bundle folder") as stage:
        (stage / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in final.iterdir()) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]   # the staging folder is gone

    with staged_dir(final, True, "bundle folder") as stage:
        (stage / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]


def _an_earlier(folder: Path, what: str) -> list[str]:
    """``folder`` made to look like an earlier output of kind ``what``: its documents (as a version
    without any marker file wrote them) and a file of the user's; returns the names."""
    for name, head in OWN_FOLDERS[what].items():
        (folder / name).write_bytes(head + b"...")
    (folder / "notes.txt").write_text("put here by hand")
    return [*OWN_FOLDERS[what], "notes.txt"]


@pytest.mark.parametrize("what", sorted(OWN_FOLDERS))
def test_force_replaces_only_an_edgekd_folder_of_that_kind_or_an_empty_one(tmp_path, what):
    """--force once replaced any folder at all (issue 25 item 6)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / next(iter(OWN_FOLDERS[what]))).write_text("my own notes")   # one name is not enough
    for force in (True, False):
        with pytest.raises(EdgeKDError, match="already exists" if not force else f"is not an edgekd {what}"):
            refuse_existing(mine, force, what)
    assert (mine / "thesis.tex").read_text() == "years of work"
    ours, empty = tmp_path / "ours", tmp_path / "empty"
    ours.mkdir()
    empty.mkdir()
    _an_earlier(ours, what)
    refuse_existing(ours, True, what)
    refuse_existing(empty, True, what)
    other = next(kind for kind in sorted(OWN_FOLDERS) if kind != what)
    with pytest.raises(EdgeKDError, match=f"is not an edgekd {other}"):
        refuse_existing(ours, True, other)              # a bundle is not a run folder, nor a sweep
    (tmp_path / "link").symlink_to(ours)
    with pytest.raises(EdgeKDError, match="is a link, not a folder"):
        refuse_existing(tmp_path / "link", True, what)


def test_staged_dir_under_force_leaves_a_folder_of_the_users_whole(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(EdgeKDError, match="is not an edgekd run folder"):
        with staged_dir(mine, True, "run folder"):
            pass
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine", "thesis.tex"]
    (mine / "thesis.tex").unlink()
    with staged_dir(mine, True, "run folder") as stage:        # an empty folder may go
        (stage / "cv.json").write_text("{}")
    assert [p.name for p in mine.iterdir()] == ["cv.json"]


def test_staged_dir_refuses_an_existing_folder_without_force(tmp_path):
    (tmp_path / "bundle").mkdir()
    with pytest.raises(EdgeKDError, match="already exists"), staged_dir(tmp_path / "bundle", False, "bundle folder"):
        pass


@pytest.mark.parametrize("out,fragment", [
    ("file/run", "/file' is not a folder"),
    ("file/a/b", "/file' is not a folder"),
    (".", "has no name of its own"),
    ("..", "has no name of its own"),
    ("/", "has no name of its own"),
])
def test_an_impossible_output_path_is_a_user_error(tmp_path, out, fragment):
    """Every command asks refuse_existing before writing, so export, distill and gate all get this."""
    (tmp_path / "file").write_text("a file, not a folder")
    path = tmp_path / out if out.startswith("file") else Path(out)     # tmp_path / "." would drop the "."
    for force in (False, True):
        with pytest.raises(EdgeKDError) as info:
            refuse_existing(path, force, "bundle folder")
        assert fragment in info.value.message
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_force_never_replaces_a_file_with_a_folder(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(EdgeKDError, match="is a file, not a folder"):
        with staged_dir(target, force=True, what="bundle folder"):
            pass
    assert target.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _hold_lock(final: Path) -> subprocess.Popen:
    """Another process holding the output lock of ``final`` until its stdin closes."""
    code = ("import sys; from edgekd.core.fsutil import OutputLock; lock = OutputLock(sys.argv[1], 'bundle'); "
            "print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(final)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_an_output_locked_by_another_process_is_refused_until_it_dies(tmp_path):
    final = tmp_path / "bundle"
    holder = _hold_lock(final)
    try:
        with pytest.raises(EdgeKDError, match=rf"bundle folder '{final}' is being written by another edgekd process "
                                              rf"\(PID {holder.pid}\)"):
            with staged_dir(final, False, "bundle folder"):
                pass
        assert sorted(p.name for p in tmp_path.iterdir()) == [".bundle.lock"]      # the holder's, untouched
    finally:
        holder.kill()       # outright: the OS releases its lock, though its lock file stays
        holder.wait()
    with staged_dir(final, False, "bundle folder") as stage:
        (stage / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]      # and the lock file is removed


def test_an_output_made_meanwhile_is_not_replaced_without_force(tmp_path):
    final = tmp_path / "bundle"
    with pytest.raises(EdgeKDError, match="already exists"), staged_dir(final, False, "bundle folder") as stage:
        (stage / "new.txt").write_text("new")
        final.mkdir()                       # by something that took no lock
        (final / "theirs.txt").write_text("theirs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert [p.name for p in final.iterdir()] == ["theirs.txt"]


def test_folders_made_for_an_output_are_removed_when_it_fails(tmp_path):
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "a" / "b" / "bundle", False, "bundle folder"):
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_planted_as_the_lock_file_is_refused_and_its_target_untouched(tmp_path):
    from edgekd.core.fsutil import OutputLock

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".out.lock").symlink_to(victim)
    with pytest.raises(EdgeKDError, match="cannot lock"):
        OutputLock(tmp_path / "out", "bundle folder")
    assert victim.read_text() == "precious"


def test_what_makes_a_folder_ours_is_what_each_command_writes(demo_run, demo_bundle):
    """OWN_FOLDERS names documents that distill, export and sweep really write, as they write them;
    so `make demo`'s distill --force and export --force find their earlier run and bundle ours."""
    from edgekd.train.config import load_config
    from edgekd.core.schema.sweep import PLAN_FILE
    from edgekd.app.sweep.plan import Plan

    for what, folder in (("run folder", demo_run), ("bundle folder", demo_bundle)):
        for name, head in OWN_FOLDERS[what].items():
            assert (folder / name).read_bytes().startswith(head), (what, name)
        refuse_existing(folder, True, what)
    record = Plan(("mlp:hidden=8",), load_config(None), {}, None).record()
    [(name, head)] = OWN_FOLDERS["sweep folder"].items()
    assert name == PLAN_FILE and record.encode().startswith(head)
