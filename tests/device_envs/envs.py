"""The device environments that tests/test_device_envs.py benches the demo bundle in.

    torch_free(dest, wheel)     a fresh x86_64 venv with only edgekd[device], installed offline, on
                                the oldest Python edgekd supports (3.10, a Jetson's) when it is here
    legacy_tflite(dest, wheel)  a fresh x86_64 venv with tflite-runtime 2.14 and numpy<2, offline
    aarch64(dest, wheel)        Debian bookworm's arm64 Python 3.11 under qemu-user as a Cortex-A72
                                (Raspberry Pi 4), edgekd[device] installed offline by its own pip

Every environment is installed the way a board without network is: `pip download` of the
wheels first (the "other machine"), then `pip install --no-index --find-links`. Downloads
(wheels, Debian's arm64 packages) are cached under ~/.cache/edgekd-tests (or
$EDGEKD_TEST_CACHE) and fetched again only when the requirement files change; edgekd itself
is always the wheel of the working tree. The arm64 run needs root (apt-get for Debian's
qemu-user-static when it is missing, a bind mount in a private mount namespace).

By hand: python tests/device_envs/envs.py {torch-free,legacy-tflite,aarch64} DEST
then DEST/bin/python -m edgekd bench BUNDLE (prefix it with the printed command for aarch64).
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEVICE_REQUIREMENTS = REPO / "requirements" / "device.txt"
LEGACY_REQUIREMENTS = HERE / "legacy-tflite.txt"
CONSTRAINTS = REPO / "constraints.txt"
CACHE = Path(os.environ.get("EDGEKD_TEST_CACHE", Path.home() / ".cache" / "edgekd-tests"))
PIP = [sys.executable, "-m", "pip"]
#: JetPack 6's Python, the oldest pyproject's requires-python allows
OLDEST_PYTHON = "3.10"

#: every manylinux tag an aarch64 board with glibc 2.36 (bookworm) accepts; given only the old
#: ones, pip silently picks ai-edge-litert 1.4 instead of the pinned release.
AARCH64_PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)]
#: Debian's arm64 packages that make a working python3.11 (stdlib, ssl, ctypes, sqlite, lzma …)
#: plus libstdc++ for the runtimes' native code.
SYSROOT_PACKAGES = ["python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6",
                    "libgcc-s1", "libstdc++6", "zlib1g", "libssl3", "libffi8", "libexpat1", "liblzma5",
                    "libbz2-1.0", "libsqlite3-0", "libuuid1", "libcrypt1", "media-types"]
#: under qemu 7.2's default CPU ("max") LiteRT's int8 results are wrong (every demo prediction
#: differs); as a Pi 4's core they are bit-exact against x86_64.
QEMU_CPU = "cortex-a72"
#: a private network namespace with no interface; a user without root gets it inside a user
#: namespace of its own (--map-root-user)
NO_NETWORK = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]


@dataclass
class DeviceEnv:
    """A Python to run commands with, and what wraps every command: no network at all (a private,
    empty network namespace) and, for aarch64, the Pi's /proc/cpuinfo."""

    name: str
    python: Path
    prefix: list[str]

    def run(self, *args, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, str(self.python), *map(str, args)], capture_output=True,
                              text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def log(message: str) -> None:
    print(f"[device envs] {message}", file=sys.stderr, flush=True)


def run(cmd: list, **kwargs) -> None:
    """Run ``cmd``; on failure raise with its output (pip's and apt's reasons are in there)."""
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")


def _key(*parts) -> str:
    """A short digest of strings and file contents: a cached download is reused while it is the same."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.read_bytes() if isinstance(part, Path) else str(part).encode())
    return h.hexdigest()[:16]


def _cached(name: str, key: str, make) -> Path:
    """CACHE/name-key, made by ``make(folder)`` when missing; older keys of ``name`` are removed."""
    done = CACHE / f"{name}-{key}"
    if done.is_dir():
        return done
    for old in CACHE.glob(f"{name}-*"):
        shutil.rmtree(old)
    part = CACHE / f".{name}-{key}.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    make(part)
    part.rename(done)
    return done


def _downloaded(name: str, args: list, key: str, python: Path = Path(sys.executable)) -> Path:
    """CACHE/wheels-name-key: the wheels `pip download ARGS` fetches, once, for ``python`` (whose
    version decides the constraints' markers). An edgekd wheel among them is dropped: edgekd
    always comes fresh from the working tree."""
    def download(folder: Path) -> None:
        log(f"downloading the {name} wheels into {folder.parent} (once; cached)")
        run([*PIP, "--python", python, "download", "-q", "--only-binary=:all:", "-d", folder, *args])
        for stale in folder.glob("edgekd-*.whl"):
            stale.unlink()
    return _cached(f"wheels-{name}", key, download)


def build_wheel(dest: Path) -> Path:
    """edgekd's wheel, built from a copy of the sources so the working tree gets no build/ or egg-info,
    with the build backend pyproject asks for (from the cache: the venv's own may be too old)."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    backend = _downloaded("build-backend", requires, _key(*requires))
    src = dest / "src"
    shutil.copytree(REPO / "edgekd", src / "edgekd", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    run([*PIP, "wheel", "-q", "--no-deps", "--no-index", "--find-links", backend, "-w", dest / "wheel", src])
    [wheel] = (dest / "wheel").glob("edgekd-*.whl")
    return wheel


def wheelhouse(name: str, wheel: Path, requirements: list[str], files: list[Path], tags: list[str],
               python: Path = Path(sys.executable)) -> Path:
    """The wheels of edgekd's dependencies plus ``requirements`` for ``python`` or the platform
    ``tags`` name; ``files`` (the requirement files), pyproject.toml and ``python`` key the cache."""
    return _downloaded(name, [*tags, *requirements, wheel],
                       _key(*requirements, *tags, *files, REPO / "pyproject.toml", python), python)


def oldest_python() -> Path:
    """Python OLDEST_PYTHON (pyenv's, or on PATH), else this one: the install is tested either way."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [*sorted(pyenv.glob(f"versions/{OLDEST_PYTHON}.*/bin/python{OLDEST_PYTHON}")),
                  shutil.which(f"python{OLDEST_PYTHON}")]
    for python in filter(None, candidates):     # a pyenv shim on PATH may refuse to run
        if subprocess.run([python, "-c", ""], capture_output=True).returncode == 0:
            return Path(python)
    log(f"no Python {OLDEST_PYTHON} here: the torch-free venv uses Python {sys.version.split()[0]}")
    return Path(sys.executable)


def _offline_venv(dest: Path, links: list[Path], requirements: list[str],
                  base: Path = Path(sys.executable)) -> Path:
    """A fresh venv of ``base`` (no pip of its own) with ``requirements`` installed from ``links`` alone."""
    run([base, "-m", "venv", "--without-pip", dest])
    python = dest / "bin" / "python"
    finds = [arg for link in links for arg in ("--find-links", link)]
    run([*PIP, "--python", python, "install", "-q", "--no-index", *finds, *requirements])
    return python


def torch_free(dest: Path, wheel: Path) -> DeviceEnv:
    """x86_64, `pip install "edgekd[device]"` with the tested pins, nothing else, on the oldest Python."""
    base = oldest_python()
    house = wheelhouse("x86_64-device", wheel, ["-c", str(CONSTRAINTS), "-r", str(DEVICE_REQUIREMENTS)],
                       [CONSTRAINTS, DEVICE_REQUIREMENTS], [], base)
    python = _offline_venv(dest, [house, wheel.parent], ["edgekd[device]"], base)
    return DeviceEnv("torch-free x86_64", python, NO_NETWORK)


def legacy_tflite(dest: Path, wheel: Path) -> DeviceEnv:
    """x86_64 with tflite-runtime 2.14 and numpy<2 (older Raspberry Pi OS images), no onnxruntime."""
    # constraints.txt pins numpy 2, which tflite-runtime cannot load; every other pin still holds
    pins = CACHE / "constraints-legacy.txt"      # a fixed path: it is part of the download's cache key
    pins.parent.mkdir(parents=True, exist_ok=True)
    pins.write_text("".join(line for line in CONSTRAINTS.read_text().splitlines(keepends=True)
                            if not line.lower().startswith("numpy==")))
    house = wheelhouse("x86_64-legacy-tflite", wheel, ["-c", str(pins), "-r", str(LEGACY_REQUIREMENTS)],
                       [pins, LEGACY_REQUIREMENTS], [])
    python = _offline_venv(dest, [house, wheel.parent], ["edgekd", "-r", str(LEGACY_REQUIREMENTS)])
    return DeviceEnv("legacy tflite-runtime x86_64", python, NO_NETWORK)


# -- aarch64 under qemu-user -------------------------------------------------------------------

def qemu() -> Path:
    """qemu-aarch64-static, installed from Debian's qemu-user-static when missing (root only)."""
    found = shutil.which("qemu-aarch64-static")
    if found:
        return Path(found)
    if os.geteuid() != 0:
        raise RuntimeError("qemu-aarch64-static is missing; install it with: sudo apt-get install qemu-user-static")
    log("installing Debian's qemu-user-static for the aarch64 check (once per machine)")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=apt_env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "qemu-user-static"], env=apt_env)
    return Path(shutil.which("qemu-aarch64-static"))


def sysroot() -> Path:
    """Debian bookworm's arm64 python3.11 unpacked into a folder (about 60 MB, cached).

    apt works on a private state folder with arm64 as its only architecture, so the host's
    dpkg configuration is never touched; the host's Debian sources are used as they are.
    """
    state = CACHE / "apt-arm64"
    opts = ["-oAPT::Architecture=arm64", "-oAPT::Architectures::=arm64", f"-oDir::State::Lists={state}/lists",
            f"-oDir::State::status={state}/status", f"-oDir::Cache={state}/cache",
            "-oAPT::Sandbox::User=root", "-q"]

    def unpack(folder: Path) -> None:
        log(f"downloading Debian's arm64 python3.11 into {folder.parent} (once; cached)")
        for sub in ("lists/partial", "cache/archives/partial"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        (state / "status").touch()
        run(["apt-get", *opts, "update"])
        with tempfile.TemporaryDirectory(dir=state) as debs:
            run(["apt-get", *opts, "download", *SYSROOT_PACKAGES], cwd=debs)
            for deb in sorted(Path(debs).glob("*.deb")):
                run(["dpkg-deb", "-x", deb, folder])
    return _cached("sysroot-arm64", _key(*SYSROOT_PACKAGES), unpack)


def pi_cpuinfo(path: Path) -> Path:
    """/proc/cpuinfo of a Raspberry Pi 4 (Cortex-A72: implementer 0x41, part 0xd08), one entry per
    host core. onnxruntime's cpuinfo reads this file and crashes on the host's x86 one."""
    block = ("processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
             "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
             "CPU revision\t: 3\n\n")
    path.write_text("".join(block.format(n=n) for n in range(os.cpu_count() or 1)))
    return path


def aarch64(dest: Path, wheel: Path) -> DeviceEnv:
    """A venv-shaped folder whose bin/python runs Debian's arm64 python3.11 under qemu-user.

    bin/python is a shell script (qemu's ``-0`` makes it the guest's argv[0], so sys.executable
    points back at it and the bench's child processes are aarch64 too, with no binfmt_misc);
    pyvenv.cfg makes DEST the prefix, so DEST/lib/python3.11/site-packages is its own.
    """
    emulator, root = qemu(), sysroot()
    house = wheelhouse("aarch64-device", wheel, ["-c", str(CONSTRAINTS), "-r", str(DEVICE_REQUIREMENTS), "pip"],
                       [CONSTRAINTS, DEVICE_REQUIREMENTS],
                       ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                        *[arg for tag in AARCH64_PLATFORMS for arg in ("--platform", tag)]])
    (dest / "bin").mkdir(parents=True)
    (dest / "pyvenv.cfg").write_text(f"home = {root}/usr/bin\ninclude-system-site-packages = false\n")
    python = dest / "bin" / "python"
    guest = root / "usr" / "bin" / "python3.11"
    python.write_text(f'#!/bin/sh\nexec {shlex.join(map(str, [emulator, "-L", root, "-cpu", QEMU_CPU]))} '
                      f'-0 "$0" {shlex.quote(str(guest))} "$@"\n')
    python.chmod(0o755)
    cpuinfo = pi_cpuinfo(dest / "cpuinfo")
    # a private mount namespace: the bind mount is seen by this command alone, never by the host
    env = DeviceEnv("aarch64 (qemu-user, Cortex-A72)", python,
                    ["unshare", "--net", "--mount", "--propagation", "private",
                     "sh", "-c", 'mount --bind "$0" /proc/cpuinfo && exec "$@"', str(cpuinfo)])
    # the install a board without network does, by the board's own (aarch64) pip; --no-compile
    # because compiling bytecode under emulation costs half a minute, and imports compile anyway
    [pip_wheel] = house.glob("pip-*.whl")
    res = env.run(pip_wheel / "pip", "install", "-q", "--no-compile", "--no-index",
                  "--find-links", house, "--find-links", wheel.parent, "edgekd[device]")
    if res.returncode != 0:
        raise RuntimeError(f"the offline install on aarch64 failed:\n{res.stdout}\n{res.stderr}")
    return env


BUILDERS = {"torch-free": torch_free, "legacy-tflite": legacy_tflite, "aarch64": aarch64}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in BUILDERS:
        print(f"error: usage: {Path(__file__).name} {{{','.join(BUILDERS)}}} DEST", file=sys.stderr)
        sys.exit(2)
    target = Path(sys.argv[2]).resolve()
    built = BUILDERS[sys.argv[1]](target, build_wheel(Path(tempfile.mkdtemp(prefix="edgekd-wheel-"))))
    print(shlex.join([*built.prefix, str(built.python)]))
