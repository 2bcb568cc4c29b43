"""``edgekd bench TARGET --remote [user@]host[:DIR]``: the board's own edgekd measures, over SSH. Torch-free.

The target is checked here first (sha256 of every file, the eval data), then copied into
``DIR/NAME`` on the board (rsync when both ends have it, else scp; NAME is the target's resolved
folder or file name), benched there by the board's
``edgekd bench`` with the same measurement options, and its bench.json brought back over the same
SSH connection settings; the caller renders and gates it as a local run's. Everything else made on
the board (its bench.json, the copied ``--data``, an ``--against`` bundle, the bench's temporary
files) lives in one ``DIR/.edgekd-run.XXXXXX`` folder that is removed afterwards unless ``keep``.

Of a bundle only its manifest.json and the files it lists (their sha256 checked here) leave this
machine: nothing else in the folder, such as a link to a key, is sent.

edgekd writes and deletes on the board only in folders it made: ``DIR/NAME`` holds its marker file
(:data:`MARKER`), or is a bundle copy an edgekd before the marker left there (:data:`_LEGACY`), which
gets the marker; any other ``DIR/NAME`` is the user's, never replaced; the rest of DIR is left
alone. Every path and name sent to the board (the bundle's file names too) passes :data:`SAFE`
first, and rsync gets them in its protocol (``-s``), not through the board's shell.

Keys, users, ports, jump hosts and host-key checking are the user's OpenSSH configuration
(``~/.ssh/config``, or ``ssh_config``): edgekd runs ssh with ``BatchMode=yes``, so it never asks
for or handles a password, and never turns host checking off.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgekd.core.errors import ConfigError, RuntimeBackendError
from edgekd.core.schema.bench import BenchDoc, from_json
from edgekd.core.schema.manifest import MANIFEST
from edgekd.core.bundle import read_files

#: the board's folder when --remote names none: relative, so under the remote user's home
DEFAULT_FOLDER = "edgekd-bench"
#: the one-line install on a board (docs/guides/board.md)
INSTALL = 'pip install "edgekd[device]"'
COPIES = ("auto", "rsync", "scp")
_TARGET = re.compile(r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?"
                     r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*)(?::(?P<folder>.*))?")
#: what a path or name on the board may hold, declared once: letters, digits and ``._/@:+,=-``, no
#: name starting with '-'. Some routes hand the path to the board's shell (rsync 3.2.7 leaves
#: backticks unescaped; scp before OpenSSH 9, or with -O, passes it unquoted), so nothing that shell
#: reads as code may be in it, nor a space, which splits it into words there: a bundle 'b -f x'
#: became 'scp -t DIR/b -f x/', an option of the board's scp. No wildcard either, so a name is
#: also a literal rsync filter.
SAFE = re.compile(r"[A-Za-z0-9._/@:+,=-]+")
_SAFE_SAID = "letters, digits and . _ / @ : + , = - (no space, no name starting with '-')"
#: the file that makes ``DIR/NAME`` on the board edgekd's own, so that a later bench may replace it
MARKER = ".edgekd-bundle"
_MARKER_TEXT = "edgekd bench --remote made this folder and replaces it on the next bench of this bundle"
#: the board's test for a ``DIR/NAME`` copied before the marker existed: a plain manifest.json that
#: opens, blanks aside, as edgekd writes every manifest (``{"schema_version": N, "edgekd_version":``).
#: The shell's own tools on its first 4 kB, nothing from the bundle runs; ``{m}``: the quoted path.
_LEGACY = ("[ -f {m} ] && [ ! -L {m} ] && head -c 4096 -- {m} | tr -d ' \\t\\r\\n' "
           "| grep -q '^{{\"schema_version\":[0-9][0-9]*,\"edgekd_version\":'")
_HINT = ("e.g. --remote pi@raspberrypi.local or pi@10.0.0.5:/home/pi/edgekd; the port, key and jump host "
         "come from your ~/.ssh/config")
#: the probe's exit statuses (ssh itself exits 255 when it cannot connect)
_NO_EDGEKD, _NO_FOLDER, _NOT_OURS = 3, 4, 5


def board_path(text: str, what: str) -> str:
    """``text`` when it may name a path on the board (:data:`SAFE`); else one ConfigError, before any connection."""
    if not SAFE.fullmatch(text) or any(part.startswith("-") for part in text.split("/")):
        raise ConfigError(f"{what} {text!r} cannot go to a board: a path there may hold only {_SAFE_SAID}",
                          hint="rename it (edgekd sends no shell characters to the board's shell)")
    return text


@dataclass(frozen=True)
class Remote:
    """Where and how to bench over SSH. ``host``: ``[user@]host`` as ssh takes it (an alias of
    your ssh config too); ``folder``: the board's folder for the bundle (relative: under the home);
    ``edgekd``: the board's command; ``copy``: auto | rsync | scp; ``keep``: leave the run's
    folder (its bench.json) on the board."""
    host: str
    folder: str = DEFAULT_FOLDER
    edgekd: str = "edgekd"
    ssh_config: str | None = None
    copy: str = "auto"
    keep: bool = False

    @classmethod
    def parse(cls, text: str, **fields) -> "Remote":
        """``[user@]host[:DIR]``; anything else (a space, a leading '-', an empty host, a DIR that
        :data:`SAFE` refuses) is refused."""
        match = _TARGET.fullmatch(text or "")
        if not match:
            raise ConfigError(f"--remote {text!r} is not [user@]host[:DIR]", hint=_HINT)
        host = f"{match['user']}@{match['host']}" if match["user"] else match["host"]
        home = re.sub(r"^~(/|$)", "", match["folder"] or DEFAULT_FOLDER) or "."     # relative: under the home
        folder = board_path(home, "the --remote folder")
        remote = cls(host, folder.rstrip("/") or "/", **fields)
        if remote.copy not in COPIES:
            raise ConfigError(f"unknown copy method '{remote.copy}'", hint=f"one of: {', '.join(COPIES)}")
        return remote

    def ssh(self) -> list[str]:
        return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
                *(["-F", self.ssh_config] if self.ssh_config else [])]

    def run(self, script: str, what: str, check: bool = True) -> subprocess.CompletedProcess:
        """``script`` run by the board's shell; a connection failure is one error."""
        done = _call([*self.ssh(), self.host, script])
        if done.returncode == 255:
            said = _last_line(done.stderr) or "ssh exited with status 255"
            raise RuntimeBackendError(f"cannot reach '{self.host}' over SSH ({what}): {said}",
                                      hint=f"check that 'ssh {self.host} true' works without a password prompt "
                                           "(edgekd runs ssh in BatchMode: keys and host checking from your "
                                           "~/.ssh/config)")
        if check and done.returncode != 0:
            raise RuntimeBackendError(f"on '{self.host}', {what} failed: {_last_line(done.stderr) or done.returncode}")
        return done


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class Session:
    """One bench on the board: its folders there and how files get there."""
    remote: Remote
    folder: str          # the board's folder, absolute
    run_folder: str      # DIR/.edgekd-run.XXXXXX, removed at the end unless kept
    copy: str            # "rsync" or "scp"

    @classmethod
    def open(cls, remote: Remote) -> "Session":
        """One SSH call: the board's edgekd is there, the folder can be written, a run folder made."""
        q = shlex.quote
        script = (f"command -v {q(remote.edgekd)} >/dev/null 2>&1 || exit {_NO_EDGEKD}; "
                  f"mkdir -p -- {q(remote.folder)} && [ -w {q(remote.folder)} ] || exit {_NO_FOLDER}; "
                  f"cd -- {q(remote.folder)} && pwd && mktemp -d \"$PWD/.edgekd-run.XXXXXX\" || exit {_NO_FOLDER}; "
                  "command -v rsync >/dev/null 2>&1 && echo rsync || echo scp")
        done = remote.run(script, "the first connection", check=False)
        if done.returncode == _NO_EDGEKD:
            raise RuntimeBackendError(f"'{remote.edgekd}' is not a command on '{remote.host}'",
                                      hint=f"install edgekd there ({INSTALL}; docs/guides/board.md) or pass "
                                           "--remote-edgekd PATH")
        if done.returncode == _NO_FOLDER:
            raise ConfigError(f"cannot write the folder '{remote.folder}' on '{remote.host}': "
                              f"{_last_line(done.stderr) or 'not writable'}",
                              hint="pass a folder the remote user may write: --remote HOST:DIR (a relative DIR "
                                   "is under its home)")
        if done.returncode != 0:
            raise RuntimeBackendError(f"on '{remote.host}', the first command failed: {_last_line(done.stderr)}")
        folder, run_folder, board_copy = done.stdout.decode().strip().splitlines()[-3:]    # after any login noise
        return cls(remote, folder, run_folder, _copy_method(remote.copy, board_copy))

    def put_bundle(self, local: Path, into: str | None = None) -> str:
        """``local`` (resolved: a bundle folder or a model file) into ``DIR/NAME``, edgekd's own folder on
        the board (:meth:`claim`), or with ``into`` (the run's folder) into ``into/NAME``; returns the
        path the board's bench takes. Of a bundle only :func:`bundle_files` go."""
        names = bundle_files(local) if local.is_dir() else None
        if into is None:
            folder = self.claim(local.name, self.copy == "scp" or names is None, names or [])
        else:
            folder = f"{into}/{local.name}"
            self.remote.run(_make_folders(folder, names or []), f"making '{folder}'")
        self.put(local, folder, names)
        return folder if names is not None else f"{folder}/{local.name}"

    def claim(self, name: str, fresh: bool, names: list[str]) -> str:
        """``DIR/NAME`` (and the folders of ``names`` in it) made with edgekd's :data:`MARKER`, or kept
        (emptied when ``fresh``) when it has one or is a :data:`_LEGACY` copy, which gets one; any other
        ``DIR/NAME`` is not edgekd's to replace: refused, left as it is."""
        q = shlex.quote
        folder = f"{self.folder}/{name}"
        here, marker = q(folder), q(f"{folder}/{MARKER}")
        ours = f"[ -f {marker} ] && [ ! -L {marker} ] || {{ {_LEGACY.format(m=q(f'{folder}/{MANIFEST}'))}; }}"
        script = (f"if [ -e {here} ] || [ -L {here} ]; then "
                  f"[ -d {here} ] && [ ! -L {here} ] && {{ {ours}; }} || exit {_NOT_OURS}; fi; "
                  + (f"rm -rf -- {here} && " if fresh else "")
                  + f"{_make_folders(folder, names)} && {{ [ -f {marker} ] || printf '%s\\n' {q(_MARKER_TEXT)} > {marker}; }}")
        done = self.remote.run(script, f"making '{folder}'", check=False)
        if done.returncode == _NOT_OURS:
            raise ConfigError(f"'{folder}' on '{self.remote.host}' is not a folder edgekd made (it has no {MARKER} "
                              f"and no {MANIFEST} of an edgekd bundle): edgekd does not replace it",
                              hint="move it away on the board, or bench into another folder: --remote HOST:OTHER_DIR")
        if done.returncode != 0:
            raise RuntimeBackendError(f"on '{self.remote.host}', making '{folder}' failed: {_last_line(done.stderr)}")
        return folder

    def put(self, local: Path, into: str, names: list[str] | None = None) -> None:
        """The file ``local`` copied into the board's folder ``into``; with ``names``, the files of the
        bundle folder ``local`` so named (paths in it, their folders made in ``into`` already), rsync
        deleting whatever else ``into`` holds but the marker. rsync's ``-s`` sends the paths in its
        protocol, never to the board's shell; scp copies each named file, never a folder (its -r
        would follow a link in it)."""
        r = self.remote
        if self.copy == "rsync":
            source, only = (str(local), []) if names is None else (f"{local}/", _rsync_only(names))
            cmds = [["rsync", "-a", "-s", *only, "-e", shlex.join(r.ssh()), source, f"{r.host}:{into}/"]]
        else:
            groups: dict[str, list[str]] = {}       # the board's folder -> the files scp copies into it
            for name in names if names is not None else [local.name]:
                there = "/".join([into, *name.split("/")[:-1]])
                groups.setdefault(there, []).append(str(local / name if names is not None else local))
            cmds = [["scp", "-q", "-B", *(["-F", r.ssh_config] if r.ssh_config else []), *files, f"{r.host}:{there}/"]
                    for there, files in groups.items()]
        for cmd in cmds:
            done = _call(cmd)
            if done.returncode != 0:
                raise RuntimeBackendError(f"copying '{local}' to '{r.host}:{into}' with {self.copy} failed: "
                                          f"{_last_line(done.stderr)}")

    def bench(self, target: str, args: list[str], fails_gate: bool) -> bytes:
        """The board's ``edgekd bench TARGET ARGS``; returns its bench.json. ``fails_gate``: exit 1
        (a failed --against gate there) still wrote bench.json, which is what is wanted here."""
        q = shlex.quote
        out = f"{self.run_folder}/bench.json"
        script = (f"TMPDIR={q(self.run_folder)} {q(self.remote.edgekd)} bench {q(target)} --out {q(out)} "
                  f"--quiet {shlex.join(args)} >/dev/null")
        done = self.remote.run(script, "the bench", check=False)
        if done.returncode not in ((0, 1) if fails_gate else (0,)):
            lines = done.stderr.decode("utf-8", "replace").splitlines()
            error = next((x[len("error: "):] for x in lines if x.startswith("error: ")), _last_line(done.stderr))
            hint = next((x[len("hint: "):] for x in lines if x.startswith("hint: ")), None)
            raise RuntimeBackendError(f"on '{self.remote.host}': {error}", hint=hint)
        return self.remote.run(f"cat -- {q(out)}", "fetching bench.json").stdout

    def close(self) -> None:
        if not self.remote.keep:
            self.remote.run(f"rm -rf -- {shlex.quote(self.run_folder)}", "removing the run's folder", check=False)


def bundle_files(bundle: Path) -> list[str]:
    """What of a bundle folder goes to the board: manifest.json and the files it lists, as paths in it."""
    return [path.relative_to(bundle).as_posix() for path in read_files(bundle)]


def _make_folders(folder: str, names: list[str]) -> str:
    """The board's command making ``folder`` and the folders of ``names`` (paths in it)."""
    inner = {"/".join([folder, *name.split("/")[:-1]]) for name in names}
    return f"mkdir -p -- {shlex.join(sorted(inner | {folder}))}"


def _rsync_only(names: list[str]) -> list[str]:
    """rsync's rules sending exactly ``names`` (and their folders) and deleting all else on the board
    but the marker. Names passed :data:`SAFE`: no wildcard, each include is literal."""
    folders = {"/".join(parts[:i]) for parts in (name.split("/") for name in names) for i in range(1, len(parts))}
    return ["--delete", "--delete-excluded", f"--filter=P /{MARKER}", *(f"--include=/{d}/" for d in sorted(folders)),
            *(f"--include=/{name}" for name in names), "--exclude=*"]


def _call(cmd: list[str]) -> subprocess.CompletedProcess:
    """ssh, scp or rsync: a client that is not installed here is a user error, not a traceback."""
    try:
        return subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise RuntimeBackendError(f"'{cmd[0]}' is not installed here: --remote needs the OpenSSH client",
                                  hint="install it (Debian/Ubuntu: apt-get install openssh-client)") from None


def _copy_method(asked: str, board: str) -> str:
    if asked == "rsync" and (board != "rsync" or not shutil.which("rsync")):
        raise ConfigError("--remote-copy rsync needs rsync here and on the board", hint="use --remote-copy scp")
    if asked == "auto":
        return "rsync" if board == "rsync" and shutil.which("rsync") else "scp"
    return asked


def bench_remote(remote: Remote, targets: list, options, progress=None) -> list[BenchDoc]:
    """``targets`` (the one to bench, and an ``--against`` one) benched on the board with
    ``options`` (:class:`~edgekd.device.bench.options.BenchOptions`); returns their bench.json documents,
    the first with a ``remote`` section saying where the bundle is on the board."""
    step = progress or (lambda done, total, label: None)
    sides = [_board_named(t, what) for t, what in zip(targets, ("the target's name", "the --against bundle's name"))]
    data = None if options.data is None else _board_named(options.data, "the --data file's name")
    step(0, 3, f"{remote.host}: connecting")
    session = Session.open(remote)
    try:
        step(1, 3, f"{remote.host}: copying with {session.copy}")
        bundle = session.put_bundle(sides[0])
        args = bench_args(options)
        if len(sides) > 1:              # into the run's own folder, which goes at the end
            args += ["--against", session.put_bundle(sides[1], into=session.run_folder)]
        if data is not None:
            session.put(data, session.run_folder)
            args += ["--data", f"{session.run_folder}/{data.name}"]
        step(2, 3, f"{remote.host}: {remote.edgekd} bench")
        doc = from_json(session.bench(bundle, args, len(targets) > 1), f"the bench.json from '{remote.host}'")
    finally:
        session.close()
    step(3, 3, "done")
    doc["remote"] = {"host": remote.host, "path": bundle, "copy": session.copy,
                     "kept": session.run_folder if remote.keep else None}
    if len(targets) == 1:
        return [doc]
    return [doc, from_json(doc["against"]["bench"], f"the --against bench.json from '{remote.host}'")]


def _board_named(local, what: str) -> Path:
    """``local`` resolved, so that '.' and '..' go to the board under their real names, which
    :func:`board_path` checks before any connection, as it does the names of a bundle's files."""
    path = Path(local).resolve()
    board_path(path.name, what)
    for name in bundle_files(path) if path.is_dir() else []:
        board_path(name, f"the file of '{path.name}'")
    return path


def bench_args(options) -> list[str]:
    """The board's bench options, as its command line takes them."""
    args = ["--threads", ",".join(map(str, options.threads)), "--batch", ",".join(map(str, options.batch)),
            "--repeat", str(options.repeat)]
    for name in ("warmup", "warmup_seconds", "runs", "min_seconds", "max_runs"):
        args += [f"--{name.replace('_', '-')}", str(getattr(options, name))]
    if options.runtime:
        args += ["--runtime", options.runtime]
    if options.providers:
        args += ["--providers", ",".join(options.providers)]
    if options.profile:
        args.append("--profile")
    return args
