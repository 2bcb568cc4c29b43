"""``edgekd bench --remote``: a real OpenSSH server (tests/ssh_board.py, in a network namespace of its
own where root allows) whose "board" is the torch-free device environment of the device tests."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import ssh_board
from conftest import FAST_BENCH, FAST_BENCH_ARGS, assert_user_error, run_cli, run_cli_here
from device_envs import envs

from edgekd.device.bench.run import run_bench
from edgekd.device.bench.gate import bench_and_check
from edgekd.device.bench.remote import DEFAULT_FOLDER, INSTALL, MARKER, Remote, Session
from edgekd.core.errors import ConfigError, RuntimeBackendError

pytestmark = pytest.mark.skipif(ssh_board.missing() is not None, reason=str(ssh_board.missing()))


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    server = ssh_board.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def board_env(tmp_path_factory) -> envs.DeviceEnv:
    wheel = envs.build_wheel(tmp_path_factory.mktemp("wheel"))
    return envs.torch_free(tmp_path_factory.mktemp("board") / "venv", wheel)


def remote(board, env, folder, **fields) -> Remote:
    return Remote.parse(f"{board.host}:{folder}", edgekd=str(env.python.parent / "edgekd"),
                        ssh_config=str(board.ssh_config), **fields)


def scores(doc: dict) -> dict:
    return {m["file"]: (m["accuracy"], m["agreement_with_teacher"]) for m in doc["models"]}


def board_python(env) -> str:
    return subprocess.run([env.python, "-c", "import platform; print(platform.python_version())"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("copy", ["rsync", "scp"])
def test_a_bench_on_the_board_scores_as_here_and_leaves_only_the_bundle(board, board_env, demo_bundle, demo_bench,
                                                                        tmp_path, copy):
    folder = tmp_path / "on_the+board,1=x@y:z"      # every character a board path may hold but '/' '.' '-' 
    doc = run_bench(demo_bundle, out=tmp_path / "bench.json", remote=remote(board, board_env, folder, copy=copy),
                    **FAST_BENCH)
    assert scores(doc) == scores(demo_bench)
    assert doc["device"]["python"].split()[-1] == board_python(board_env)    # the board's edgekd measured
    assert doc["remote"] == {"host": board.host, "path": str(folder / demo_bundle.name), "copy": copy, "kept": None}
    assert [p.name for p in folder.iterdir()] == [demo_bundle.name]
    assert sorted(p.name for p in (folder / demo_bundle.name).iterdir()) == sorted(
        [MARKER, *(p.name for p in demo_bundle.iterdir())])
    assert json.loads((tmp_path / "bench.json").read_text())["remote"]["host"] == board.host
    assert doc["outputs"]["json"] == str(tmp_path / "bench.json")


def test_remote_keep_leaves_the_boards_bench_json(board, board_env, demo_bundle, tmp_path):
    doc = run_bench(demo_bundle, out=False, remote=remote(board, board_env, tmp_path, keep=True), **FAST_BENCH)
    kept = tmp_path / doc["remote"]["kept"]
    assert kept.parent == tmp_path and (kept / "bench.json").is_file()
    assert json.loads((kept / "bench.json").read_text())["models"] == doc["models"]


def test_the_gate_judges_a_board_bench_like_a_local_one(board, board_env, demo_bundle, demo_bench, tmp_path):
    """Budget, baseline, --save-baseline and --junit through --remote, by the command line. (The
    baseline was measured in the main venv, the board is another Python: memory may differ.)"""
    (tmp_path / "base.json").write_text(json.dumps(demo_bench))
    (tmp_path / "budget.toml").write_text("[student]\nmin_accuracy_percent = 99.5\n"
                                          "[teacher]\nmin_accuracy_percent = 50\n"
                                          # the baseline is the main venv's FAST_BENCH (5 runs): its
                                          # latency says nothing about the board's, which is not under test
                                          "[baseline]\nmax_memory_increase_percent = 100\n"
                                          "max_latency_increase_percent = 1000\n")
    res = run_cli("bench", demo_bundle, *FAST_BENCH_ARGS, "--repeat", "2", "--quiet",
                  "--remote", f"{board.host}:{tmp_path / 'board'}", "--ssh-config", board.ssh_config,
                  "--remote-edgekd", board_env.python.parent / "edgekd", "--budget", tmp_path / "budget.toml",
                  "--baseline", tmp_path / "base.json", "--save-baseline", tmp_path / "next.json",
                  "--junit", tmp_path / "gate.xml", "--out", tmp_path / "bench.json")
    assert res.returncode == 1, res.stderr
    failed = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 2 and all("student" in f and "min_accuracy_percent" in f for f in failed), res.stdout
    assert "PASS  teacher.onnx max_accuracy_drop_points" in res.stdout
    assert json.loads((tmp_path / "next.json").read_text())["remote"]["host"] == board.host
    assert "<failure" in (tmp_path / "gate.xml").read_text()


def test_an_ab_gate_on_the_board_pairs_the_two_bundles_there(board, board_env, demo_bundle, tmp_path):
    result, report = bench_and_check(demo_bundle, against=demo_bundle, repeat=3, out=False,
                                     remote=remote(board, board_env, tmp_path), **FAST_BENCH)
    latency = [c for c in report.checks if c.key == "max_latency_increase_percent"]
    assert len(latency) == len(result["models"]) and all(c.lower is not None for c in latency)
    assert scores(result["against"]["bench"]) == scores(result)
    assert [p.name for p in tmp_path.iterdir()] == [demo_bundle.name]    # the old bundle went with the run


def test_a_board_without_edgekd_is_one_error_with_the_install_line(board, board_env, demo_bundle, tmp_path):
    with pytest.raises(RuntimeBackendError) as info:
        run_bench(demo_bundle, out=False, remote=Remote.parse(
            f"{board.host}:{tmp_path}", edgekd="edgekd-not-installed", ssh_config=str(board.ssh_config)),
            **FAST_BENCH)
    assert "'edgekd-not-installed' is not a command" in info.value.message and INSTALL in info.value.hint


@pytest.mark.parametrize("host, folder, board_edgekd, fragment", [
    ("edgekd-test-nowhere", "x", True, "cannot reach 'edgekd-test-nowhere' over SSH"),
    (ssh_board.ALIAS, "/proc/edgekd-bench", True, "cannot write the folder '/proc/edgekd-bench'"),
    (ssh_board.ALIAS, "x", False, "'edgekd' is not a command on"),        # none on the board's PATH
])
def test_an_unreachable_board_an_unwritable_folder_or_no_edgekd_is_one_error_line(
        board, board_env, demo_bundle, tmp_path, host, folder, board_edgekd, fragment):
    edgekd = ["--remote-edgekd", board_env.python.parent / "edgekd"] if board_edgekd else []
    res = run_cli("bench", demo_bundle, *FAST_BENCH_ARGS, "--remote", f"{host}:{folder}", *edgekd,
                  "--ssh-config", board.ssh_config, "--out", tmp_path / "bench.json")
    assert_user_error(res, fragment)
    assert not (tmp_path / "bench.json").exists()


def test_the_server_is_walled_off_where_root_allows(board):
    """In its own network namespace only loopback exists: nothing else here can reach the server."""
    if not board.isolated:
        pytest.skip("not root here: the test sshd listens on this machine's 127.0.0.1")
    links = board.ssh("ip -o link show").stdout.splitlines()
    assert len(links) == 1 and ": lo:" in links[0], links


@pytest.mark.parametrize("text", ["", "-oProxyCommand=touch /tmp/x", "user@", "@host", "two words", "host:a\nb",
                                  "pi@rasp berry", "[::1"])
def test_a_malformed_remote_is_refused_before_any_ssh(text):
    with pytest.raises(ConfigError, match=r"is not \[user@\]host\[:DIR\]"):
        Remote.parse(text)


@pytest.mark.parametrize("text, host, folder", [
    ("board", "board", DEFAULT_FOLDER), ("pi@raspberrypi.local:/home/pi/x", "pi@raspberrypi.local", "/home/pi/x"),
    ("pi@[::1]:~/bench/", "pi@[::1]", "bench"), ("jetson:", "jetson", DEFAULT_FOLDER)])
def test_a_remote_names_user_host_and_folder(text, host, folder):
    r = Remote.parse(text)
    assert (r.host, r.folder) == (host, folder)


def test_make_test_installs_the_ssh_server_first():
    make = subprocess.run(["make", "-n", "test"], capture_output=True, text=True, cwd=envs.REPO)
    assert "apt-get install" in make.stdout and "openssh-server rsync" in make.stdout, make.stdout


def test_a_sweep_benches_each_student_on_the_board_in_a_folder_of_its_own(board, board_env, tmp_path):
    from edgekd.device.bench.options import BenchOptions
    from edgekd.train.config import load_config
    from edgekd.app.sweep import run_sweep

    students = ["mlp:hidden=8", "mlp:hidden=16"]
    doc = run_sweep(load_config(None, folds=1, teacher_epochs=2, student_epochs=3), students, tmp_path / "sw",
                    bench=BenchOptions(**FAST_BENCH), remote=remote(board, board_env, tmp_path / "board"))
    assert doc["remote"] == f"{board.host}:{tmp_path / 'board'}" and "over SSH" in doc["device"]
    names = [s["name"] for s in doc["students"]]
    assert sorted(p.name for p in (tmp_path / "board").iterdir()) == sorted(names)
    for name in names:
        bench = json.loads((tmp_path / "sw" / "students" / name / "bundle" / "bench.json").read_text())
        assert bench["remote"]["path"] == str(tmp_path / "board" / name / "bundle")
        assert bench["device"]["python"].split()[-1] == board_python(board_env)


def test_a_sweep_checks_the_board_before_it_trains(board, tmp_path):
    result = run_cli("sweep", "--students", "mlp:hidden=8", "--remote", f"{board.host}:{tmp_path / 'board'}",
                     "--ssh-config", board.ssh_config, "--remote-edgekd", "/nowhere/edgekd", "--out", tmp_path / "sw")
    assert_user_error(result, "'/nowhere/edgekd' is not a command on")
    assert not (tmp_path / "sw").exists() and not (tmp_path / ".sw.partial").exists()


# -- what reaches the board's shell, and what edgekd may delete there ------------------------------

#: each runs {run} if the board's shell reads it as code; the last is an option where a path is expected
PAYLOADS = {"backtick": "b`{run}`", "dollar": "b$({run})", "semicolon": "b;{run}", "newline": "b\n{run}",
            "dash": "-oProxyCommand={run}",
            # legacy scp (OpenSSH < 9, or -O) hands 'scp -t DIR/b -f x/' to the board's shell: an option
            "space": "b -f {run}"}


def marking_script(folder: Path) -> tuple[Path, Path]:
    """An executable with no arguments (rsync 3.2.7 escapes spaces, not backticks or newlines) that
    makes a marker file: the marker's existence proves the script ran."""
    script, ran = folder / "payload.sh", folder / "ran"
    script.write_text(f"#!/bin/sh\ntouch {ran}\n")
    script.chmod(0o755)
    return script, ran


@pytest.mark.parametrize("copy", ["rsync", "scp"])
@pytest.mark.parametrize("place", ["host", "folder", "bundle", "data"])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_shell_characters_in_the_host_folder_or_a_name_are_refused_before_any_connection(
        board, board_env, demo_bundle, tmp_path, copy, place, payload):
    """rsync 3.2.7 leaves backticks and newlines to the board's shell: a folder ran the marking script
    there, a bundle or --data file named b`hostname` arrived renamed. Each is one error line now,
    before the first connection (which would make DIR: nothing reaches the board)."""
    script, ran = marking_script(tmp_path)
    # a name holds no '/': there the payload is a command on the board's PATH
    text = PAYLOADS[payload].format(run=script if place in ("host", "folder") else "hostname")
    host, folder, name = board.host, tmp_path / "board", "bundle"
    if place == "host":
        host = text
    elif place == "folder":
        folder = folder / text
    elif place == "bundle":
        name = text
    bundle = shutil.copytree(demo_bundle, tmp_path / name)
    data = shutil.copy(demo_bundle / "eval.npz", tmp_path / (text if place == "data" else "data.npz"))
    with pytest.raises(ConfigError) as info:
        run_bench(bundle, out=False, data=data, **FAST_BENCH, remote=Remote.parse(
            f"{host}:{folder}", edgekd=str(board_env.python.parent / "edgekd"), ssh_config=str(board.ssh_config),
            copy=copy))
    assert "\n" not in info.value.message + (info.value.hint or ""), info.value.message
    assert not (tmp_path / "board").exists() and not ran.exists()


def test_rsync_sends_board_paths_in_its_protocol_not_through_the_boards_shell(board, board_env, tmp_path):
    """Under the allow-list, rsync's -s: a path that got past it would still reach no shell."""
    script, ran = marking_script(tmp_path)
    into = Path(f"{tmp_path}/b`{script}`")        # folders b`, tmp, ..., payload.sh`
    into.mkdir(parents=True)
    (tmp_path / "file.txt").write_text("sent")
    session = Session.open(remote(board, board_env, tmp_path / "board", copy="rsync"))
    try:
        session.put(tmp_path / "file.txt", str(into))
    finally:
        session.close()
    assert (into / "file.txt").read_text() == "sent"
    assert not ran.exists()


@pytest.mark.parametrize("copy", ["rsync", "scp"])
def test_bench_dot_and_dotdot_write_only_their_own_folder_on_the_board(
        board, board_env, demo_bundle, tmp_path, monkeypatch, copy):
    """`bench . --remote board:DIR` once deleted everything else in DIR (rsync --delete into DIR/,
    scp's rm -rf DIR/), and `bench ..` DIR's parent: the bundle goes to DIR/<its real name> now."""
    folder = tmp_path / "parent" / "board"
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("the user's")
    (folder.parent / "theirs.txt").write_text("the user's too")
    bundle = shutil.copytree(demo_bundle, tmp_path / "work" / "my-bundle")
    (bundle / "sub").mkdir()
    for cwd, target in ((bundle, "."), (bundle / "sub", "..")):
        monkeypatch.chdir(cwd)
        doc = run_bench(target, out=False, remote=remote(board, board_env, folder, copy=copy), **FAST_BENCH)
        assert doc["remote"]["path"] == str(folder / "my-bundle")
    assert (folder / "mine.txt").read_text() == "the user's"
    assert (folder.parent / "theirs.txt").read_text() == "the user's too"
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt", "my-bundle"]
    assert sorted(p.name for p in (folder / "my-bundle").iterdir()) == sorted(      # the bundle's files, not sub/
        [MARKER, *(p.name for p in demo_bundle.iterdir())])


@pytest.mark.parametrize("copy", ["rsync", "scp"])
def test_a_bench_replaces_only_a_folder_edgekd_marked_on_the_board(board, board_env, demo_bundle, tmp_path, copy):
    folder = tmp_path / "board"
    run_bench(demo_bundle, out=False, remote=remote(board, board_env, folder, copy=copy), **FAST_BENCH)
    (folder / demo_bundle.name / "stale.onnx").write_text("from an older bundle")
    run_bench(demo_bundle, out=False, remote=remote(board, board_env, folder, copy=copy), **FAST_BENCH)
    assert sorted(p.name for p in (folder / demo_bundle.name).iterdir()) == sorted(
        [MARKER, *(p.name for p in demo_bundle.iterdir())])
    theirs = folder / "other"             # the user's own folder of the bundle's name
    theirs.mkdir()
    (theirs / "notes.txt").write_text("the user's")
    other = shutil.copytree(demo_bundle, tmp_path / "other")
    res = run_cli_here("bench", other, *FAST_BENCH_ARGS, "--remote", f"{board.host}:{folder}", "--remote-copy", copy,
                       "--ssh-config", board.ssh_config, "--remote-edgekd", board_env.python.parent / "edgekd",
                       "--out", tmp_path / "bench.json")
    assert_user_error(res, f"'{theirs}' on '{board.host}' is not a folder edgekd made")
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"] and (theirs / "notes.txt").read_text() == "the user's"
    assert sorted(p.name for p in folder.iterdir()) == sorted([demo_bundle.name, "other"])    # no run folder left
    assert not (tmp_path / "bench.json").exists()


def test_a_single_model_goes_to_a_marked_folder_of_its_name_on_the_board(board, board_env, demo_bundle, tmp_path):
    model = demo_bundle / json.loads((demo_bundle / "manifest.json").read_text())["models"][0]["file"]
    folder = tmp_path / "board"
    for _ in range(2):          # the second bench replaces the first one's folder
        doc = run_bench(model, out=False, remote=remote(board, board_env, folder, copy="rsync"), **FAST_BENCH)
    assert doc["remote"]["path"] == str(folder / model.name / model.name)
    assert sorted(p.name for p in (folder / model.name).iterdir()) == sorted([MARKER, model.name])


def bundle_copy(demo_bundle: Path, where: Path) -> Path:
    """A copy of the bundle with what its manifest does not list: a link to a secret, a plain file."""
    bundle = shutil.copytree(demo_bundle, where)
    (where.parent / "id_ed25519").write_text("SECRET KEY")
    (bundle / "notes").symlink_to(where.parent / "id_ed25519")
    (bundle / "extra.txt").write_text("not in the manifest")
    return bundle


@pytest.mark.parametrize("copy", ["rsync", "scp"])
def test_only_the_manifest_and_the_files_it_lists_go_to_the_board(board, board_env, demo_bundle, tmp_path, copy):
    """scp -r followed an unlisted link in the bundle (notes -> ~/.ssh/id_ed25519) and sent the key;
    rsync sent the link and any unlisted file. The --against bundle goes the same way."""
    listed = sorted(["manifest.json", *json.loads((demo_bundle / "manifest.json").read_text())["files"]])
    new, old = bundle_copy(demo_bundle, tmp_path / "new" / "bundle"), bundle_copy(demo_bundle, tmp_path / "old" / "b2")
    folder = tmp_path / "board"
    result, _ = bench_and_check(new, against=old, repeat=3, out=False,
                                remote=remote(board, board_env, folder, copy=copy, keep=True), **FAST_BENCH)
    assert sorted(p.name for p in (folder / "bundle").iterdir()) == sorted([MARKER, *listed])
    kept = Path(result["remote"]["kept"])
    assert sorted(p.name for p in (kept / "b2").iterdir()) == listed
    assert not [p for p in folder.rglob("*") if p.is_symlink() or p.is_file() and p.read_bytes() == b"SECRET KEY"]


def test_a_bundle_file_name_the_board_cannot_take_is_refused_before_any_connection(board, board_env, demo_bundle,
                                                                                  tmp_path):
    bundle = shutil.copytree(demo_bundle, tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "eval.npz").rename(bundle / "e -f x.npz")
    manifest["files"]["e -f x.npz"] = manifest["files"].pop("eval.npz")
    manifest["eval"]["file"] = "e -f x.npz"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"the file of 'bundle' 'e -f x.npz' cannot go to a board"):
        run_bench(bundle, out=False, remote=remote(board, board_env, tmp_path / "board", copy="scp"), **FAST_BENCH)
    assert not (tmp_path / "board").exists()


@pytest.mark.parametrize("copy", ["rsync", "scp"])
def test_a_bundle_copied_before_the_marker_is_replaced_and_marked(board, board_env, demo_bundle, tmp_path, copy):
    """A board benched before the marker existed holds DIR/NAME as a plain copy of the bundle: it is
    edgekd's (its manifest.json opens as edgekd writes it), replaced and marked, so a sweep resumes."""
    folder = tmp_path / "board"
    legacy = shutil.copytree(demo_bundle, folder / demo_bundle.name)
    (legacy / "stale.onnx").write_text("from an older bundle")
    doc = run_bench(demo_bundle, out=False, remote=remote(board, board_env, folder, copy=copy), **FAST_BENCH)
    assert doc["remote"]["path"] == str(legacy)
    assert sorted(p.name for p in legacy.iterdir()) == sorted([MARKER, *(p.name for p in demo_bundle.iterdir())])


@pytest.mark.parametrize("manifest", ["foreign", "link"])
def test_a_folder_with_a_manifest_edgekd_did_not_write_is_still_refused(board, board_env, demo_bundle, tmp_path,
                                                                       manifest):
    theirs = tmp_path / "board" / demo_bundle.name
    theirs.mkdir(parents=True)
    if manifest == "foreign":       # a manifest.json of the user's own
        (theirs / "manifest.json").write_text('{"name": "my app", "schema_version": 2, "files": {}}\n')
    else:                           # a link to an edgekd manifest is no copy edgekd made
        (theirs / "manifest.json").symlink_to(demo_bundle / "manifest.json")
    before = sorted((p.name, p.is_symlink()) for p in theirs.iterdir())
    with pytest.raises(ConfigError, match="is not a folder edgekd made"):
        run_bench(demo_bundle, out=False, remote=remote(board, board_env, tmp_path / "board"), **FAST_BENCH)
    assert sorted((p.name, p.is_symlink()) for p in theirs.iterdir()) == before
    assert [p.name for p in (tmp_path / "board").iterdir()] == [demo_bundle.name]       # no run folder left
