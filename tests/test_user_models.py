"""Your own model (``FILE.py:FACTORY``, ``MODULE:FACTORY``) and trained teacher weights in
(``--teacher-weights``): distill → export → bench end to end, and every bad input as one error."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import edgekd
from edgekd.device.bench.run import run_bench
from edgekd.train.modelfile import load_model
from edgekd.train.config import load_config
from edgekd.train.distill import Experiment, run_experiment
from edgekd.core.errors import ConfigError, ModelError
from edgekd.train.models import build
from edgekd.train.models.user import parse_user_spec

from conftest import FAST_BENCH, TINY, assert_user_error, run_cli, run_cli_here

USER_MODELS = Path(__file__).parent / "user_models"
SHUFFLE = "shufflenet_tiny.py:shufflenet_tiny:width=12,groups=2,depth=1"   # small: grouped convs are slow on CPU
# a short run: one fold, few epochs; the models need not learn well, only go through every stage
SHORT = dict(data="digits", teacher="cnn:width=8,depth=2", student="cnn:width=4,depth=1", folds=1,
             teacher_epochs=1, student_epochs=2, student_fraction=0.2, batch_size=64, seed=0)

# one user file per way the user's code can fail; each defines ``make``
BAD_FILES = {
    "syntax.py": "def make(num_classes)\n    return None\n",
    "imports.py": "import edgekd_not_installed_anywhere\n\ndef make(num_classes):\n    pass\n",
    "raises_on_import.py": "raise RuntimeError('no GPU here')\n",
    "not_a_module.py": "def make(num_classes):\n    return 'a model, promise'\n",
    "wrong_output.py": "import torch\n\ndef make(num_classes):\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                       "torch.nn.Linear(64, 3))\n",
    "untraceable.py": (
        "import torch\n\nclass Branchy(torch.nn.Module):\n    def __init__(self, num_classes):\n"
        "        super().__init__()\n        self.head = torch.nn.Linear(64, num_classes)\n"
        "    def forward(self, x):\n        x = x.flatten(1)\n"
        "        if x.sum() > 0:          # a branch on the data: torch.export cannot trace it\n"
        "            x = x * 2\n        return self.head(x)\n\n"
        "def make(num_classes):\n    return Branchy(num_classes)\n"),
}


def _write_bad_files(folder: Path) -> None:
    for name, text in BAD_FILES.items():
        (folder / name).write_text(text)


def test_the_syntax_tells_user_code_from_the_zoo():
    assert parse_user_spec("cnn:width=8,depth=2") is None and parse_user_spec("cnn") is None
    assert parse_user_spec("cnn:width") is None               # a zoo name stays the zoo's (its error names the option)
    module = parse_user_spec("my_models.nets:tiny:width=8,depth=2")
    assert (module.target, module.factory, module.options, module.is_file) == ("my_models.nets", "tiny",
                                                                               "width=8,depth=2", False)
    file = parse_user_spec("models/net.py:make")
    assert (file.target, file.factory, file.options, file.is_file) == ("models/net.py", "make", "", True)


def test_a_module_factory_gets_the_facts_it_declares_and_typed_options(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(USER_MODELS))
    model = build("shufflenet_tiny:shufflenet_tiny:width=12,groups=2", (3, 32, 32), 7)
    assert model.stem[0].in_channels == 3 and model.head.out_features == 7 and model.head.in_features == 12
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    (tmp_path / "timm_like.py").write_text(
        "import torch\n\ndef make(num_classes, in_chans, input_shape, scale: float = 1.0):\n"
        "    model = torch.nn.Linear(1, 1)\n    model.facts = (num_classes, in_chans, input_shape, scale)\n"
        "    return model\n")
    assert build(f"{tmp_path}/timm_like.py:make:scale=2", (3, 32, 32), 5).facts == (5, 3, (3, 32, 32), 2.0)
    with pytest.raises(ModelError, match="model option 'width' in .* must be an integer, got '1.5'"):
        build("shufflenet_tiny:shufflenet_tiny:width=1.5", (1, 8, 8), 10)
    with pytest.raises(ModelError, match="unknown option of model 'shufflenet_tiny:shufflenet_tiny': 'widht'"):
        build("shufflenet_tiny:shufflenet_tiny:widht=12", (1, 8, 8), 10)
    with pytest.raises(ModelError, match="needs image input"):       # in_chans of tabular data
        build(f"{tmp_path}/timm_like.py:make", (12,), 5)


@pytest.mark.slow
def test_a_student_from_a_user_file_distills_exports_and_benches(tmp_path, monkeypatch):
    """A relative file path is recorded absolute, so export finds the code from any folder;
    once the file is gone, export says it needs the same import path."""
    (tmp_path / "models").mkdir()
    shutil.copy(USER_MODELS / "shufflenet_tiny.py", tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    summary = run_experiment(load_config(None, **{**SHORT, "student": f"models/{SHUFFLE}"}, out=str(run)))
    recorded = f"{tmp_path}/models/{SHUFFLE}"
    assert json.loads((run / "student" / "model.json").read_text())["arch"] == recorded
    assert summary["models"]["student"]["arch"] == recorded and f'student = "{recorded}"' in \
        (run / "config.toml").read_text()
    monkeypatch.chdir(Path(__file__).parent)
    bundle = tmp_path / "bundle"
    with pytest.raises(ModelError, match="names Python code to run"):     # not without being told to
        edgekd.export(run, out=bundle)
    assert not bundle.exists()
    edgekd.export(run, out=bundle, trust_model_code=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {m["file"] for m in manifest["models"]} >= {"student.onnx", "student.int8.tflite", "teacher.onnx"}
    report = run_bench(bundle, out=tmp_path / "bench.json", **FAST_BENCH)
    reference = {m["file"]: m["reference_accuracy"] for m in manifest["models"]}
    measured = {m["file"]: m["accuracy"] for m in report["models"]}
    assert measured["student.onnx"] == pytest.approx(reference["student.onnx"], abs=0.01)
    assert measured["student.int8.tflite"] == pytest.approx(reference["student.int8.tflite"], abs=0.1)
    (tmp_path / "models" / "shufflenet_tiny.py").unlink()
    with pytest.raises(ModelError, match="not found .*needs the same import path"):
        edgekd.export(run, out=tmp_path / "again", trust_model_code=True)
    assert not (tmp_path / "again").exists()


def test_a_run_folder_naming_code_runs_nothing_unless_trusted(demo_run, tmp_path):
    """A copied or hostile run's model.json can name any importable function: export and
    --teacher-from refuse it before importing anything (the marker is never written)."""
    from edgekd.train.distill.checks import check_teacher_split
    from edgekd.train.distill.teachers import load_teacher

    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef factory(num_classes):\n    pass\n")
    run = shutil.copytree(demo_run, tmp_path / "run")
    for role in ("student", "teacher"):
        spec_path = run / role / "model.json"
        spec_path.write_text(json.dumps({**json.loads(spec_path.read_text()), "arch": f"{tmp_path}/evil.py:factory"}))
    with pytest.raises(ModelError, match="names Python code to run") as info:
        edgekd.export(run, out=tmp_path / "bundle")
    assert "--trust-model-code" in info.value.hint and not (tmp_path / "bundle").exists()
    with pytest.raises(ModelError, match="names Python code to run") as info:
        load_teacher(str(run))
    # the hint proposes no command that would run the folder's spec, only the flag and the weights
    assert "--trust-model-code" in info.value.hint and "evil.py" not in info.value.hint
    assert str(run / "teacher" / "model.safetensors") in info.value.hint
    assert not marker.exists()
    # trusted (distill --teacher-from RUN --trust-model-code): a factory of the user's rebuilds it
    arch = json.loads((demo_run / "teacher" / "model.json").read_text())["arch"]
    (tmp_path / "mine.py").write_text("from edgekd.train.models import build\n\ndef make(num_classes, input_shape):\n"
                                      f"    return build({arch!r}, input_shape, num_classes)\n")
    spec_path = run / "teacher" / "model.json"
    spec_path.write_text(json.dumps({**json.loads(spec_path.read_text()), "arch": f"{tmp_path}/mine.py:make"}))
    brought = load_teacher(str(run), trust_code=True)
    assert brought.arch == f"{tmp_path}/mine.py:make"
    # its config.toml naming code is read for its split only (no refusal, nothing run)
    config = run / "config.toml"
    config.write_text(re.sub(r'(?m)^student = .*$', f'student = "{tmp_path}/evil.py:factory"', config.read_text()))
    check_teacher_split(load_config(None), brought)          # same data, seed and held-out split
    assert not marker.exists()


def test_teacher_weights_reach_the_same_held_out_accuracy_without_training(demo_run, tmp_path):
    """A teacher trained in one run, saved as a plain safetensors state dict, brought into another."""
    teacher, _ = load_model(demo_run / "teacher")
    weights = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(weights))
    summary = run_experiment(load_config(None, **{**SHORT, "teacher": TINY["teacher"]}, teacher_weights=str(weights),
                                         out=str(tmp_path / "run")))
    splits = [*summary["folds"], summary["final"]]
    assert all(s["teacher"]["trained"] is False and s["teacher"]["source"] == str(weights) for s in splits)
    assert all(0 < s["teacher"]["accuracy"] <= 1 for s in splits) and "teacher" not in summary["samples_per_second"]
    assert summary["test"]["teacher"] == json.loads((demo_run / "cv.json").read_text())["test"]["teacher"]
    again, _ = load_model(tmp_path / "run" / "teacher")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in teacher.state_dict().items())


def _bad_spec(tmp_path: Path, case: str) -> dict:
    _write_bad_files(tmp_path)
    torch.save({"w": torch.zeros(1)}, tmp_path / "pickle.pt")
    save_file(build("cnn:width=32,depth=2", (1, 8, 8), 10).state_dict(), str(tmp_path / "cnn32.safetensors"))
    return {
        "module-missing": {"student": "edgekd_no_such_module.nets:make"},
        "file-missing": {"student": "nowhere/net.py:make"},
        "not-a-py-file": {"student": "models/net.txt:make"},
        "syntax-error": {"student": "syntax.py:make"},
        "import-fails": {"student": "imports.py:make"},
        "raises-on-import": {"student": "raises_on_import.py:make"},
        "factory-missing": {"student": "not_a_module.py:maek"},
        "factory-raises": {"student": str(USER_MODELS / "shufflenet_tiny.py") + ":shufflenet_tiny:width=25"},
        "returns-non-module": {"student": "not_a_module.py:make"},
        "wrong-output": {"teacher": "wrong_output.py:make"},
        "untraceable": {"student": "untraceable.py:make"},
        "weights-of-another-arch": {"teacher": "cnn:width=16,depth=2", "teacher_weights": "cnn32.safetensors"},
        "weights-missing": {"teacher_weights": "none.safetensors"},
        "weights-a-pickle": {"teacher_weights": "pickle.pt"},
        "weights-and-teacher-from": {"teacher_weights": "cnn32.safetensors", "teacher_from": "runs/demo"},
    }[case]


@pytest.mark.parametrize("case,error,fragment", [
    ("module-missing", ModelError, "cannot import module 'edgekd_no_such_module.nets': No module named "
                                   "'edgekd_no_such_module' (a user model needs the same import path"),
    ("file-missing", ModelError, "nowhere/net.py' not found (a user model needs the same import path"),
    ("not-a-py-file", ModelError, "net.txt' is not a .py file"),
    ("syntax-error", ModelError, "syntax.py' has a syntax error: expected ':'"),
    ("import-fails", ModelError, "imports.py' fails to import: No module named 'edgekd_not_installed_anywhere'"),
    ("raises-on-import", ModelError, "raises_on_import.py' fails to import: RuntimeError: no GPU here"),
    ("factory-missing", ModelError, "unknown factory in model file"),
    ("factory-raises", ModelError, "factory 'shufflenet_tiny' of model file '"),
    ("returns-non-module", ModelError, "returned a str, not a torch.nn.Module"),
    ("wrong-output", ModelError, "returns (2, 3) for a batch of 2, expected logits (2, 10)"),
    ("untraceable", ModelError, "untraceable.py' cannot be traced by torch.export"),
    ("weights-of-another-arch", ModelError, "does not match the teacher 'cnn:width=16,depth=2': tensor "
                                            "'features.0.weight' has shape [32, 1, 3, 3] in the file, [16, 1, 3, 3]"),
    ("weights-missing", ModelError, "teacher weights 'none.safetensors' not found"),
    ("weights-a-pickle", ModelError, "pickle.pt' is not a readable safetensors file"),
    ("weights-and-teacher-from", ConfigError, "--teacher-weights and --teacher-from both bring a teacher"),
])
def test_bad_user_models_and_weights_are_one_error_before_anything_is_written(tmp_path, monkeypatch, case, error,
                                                                              fragment):
    monkeypatch.chdir(tmp_path)
    options = _bad_spec(tmp_path, case)
    with pytest.raises(error) as info:
        Experiment.prepare(load_config(None, **{**SHORT, **options}, out=str(tmp_path / "run")))
    assert fragment in info.value.message, info.value.message
    if case == "factory-missing":
        assert "did you mean 'make'?" in info.value.hint
    if case == "factory-raises":
        assert "raised ValueError: width 25 must be a multiple of 2 x groups (6)" in info.value.message
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


@pytest.mark.slow
def test_an_untraceable_user_model_is_one_error_line_from_the_cli(tmp_path):
    """A real process: torch.export logs to its own streams, which must stay off the terminal."""
    _write_bad_files(tmp_path)
    result = run_cli("distill", "--student", "untraceable.py:make", "--folds", "1", "--out", tmp_path / "run",
                     cwd=tmp_path)
    assert_user_error(result, "cannot be traced by torch.export (export needs it)")
    assert "hint: edgekd exports through torch.export" in result.stderr and not (tmp_path / "run").exists()


# -- code named in a file runs only when trusted; a factory is a model factory; user code never exits edgekd --------

def _victim(tmp_path: Path) -> Path:
    """A folder a hostile spec would delete: it must still hold its file afterwards."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine\n")
    return victim


def _marker_file(tmp_path: Path, name: str = "evil.py") -> tuple[Path, Path]:
    """A model file whose import writes a marker: the marker proves its code ran."""
    marker = tmp_path / "ran"
    path = tmp_path / name
    path.write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\n\n"
                    "def make(num_classes):\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                    "torch.nn.Linear(64, num_classes))\n")
    return path, marker


def test_a_config_file_naming_code_is_refused_unless_trusted(tmp_path, monkeypatch):
    """A config.toml someone sent (a run's, which re-runs it) names code: refused before any import,
    its hint proposes no command that runs it; a model given by the caller overrides the file's."""
    victim = _victim(tmp_path)
    evil, marker = _marker_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    for key, spec in (("student", f"shutil:rmtree:path={victim}"), ("teacher", f"{evil}:make")):
        config = tmp_path / "c.toml"
        config.write_text(f'{key} = "{spec}"\nfolds = 1\n')
        with pytest.raises(ConfigError, match=f"'{config}' names Python code to run as the {key}") as info:
            Experiment.prepare(load_config(config, out=str(tmp_path / "run")))
        assert "--trust-model-code" in info.value.hint and spec not in info.value.hint
        assert load_config(config, **{key: "cnn:width=4,depth=1"}).__dict__[key] == "cnn:width=4,depth=1"
        assert load_config(config, trust_model_code=True).__dict__[key] == spec        # loading runs nothing
    assert (victim / "keep.txt").is_file() and not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("spec, fragment", [
    ("shutil:rmtree:path={victim}", "module 'shutil' is part of Python's standard library"),
    ("os:remove:path={victim}/keep.txt", "module 'os' is part of Python's standard library"),
    ("subprocess:run:args=rm", "module 'subprocess' is part of Python's standard library"),
    ("numpy:save:file={victim}/keep.txt,arr=1", "its installed packages or edgekd: not model code"),
    ("torch.hub:load:repo_or_dir={victim}", "its installed packages or edgekd: not model code"),
    # an installed package's own function, defined where it is named (a decorator keeps its __module__):
    # refused by where it lies, as a file there is
    ("sklearn.datasets._base:clear_data_home:data_home={victim}", "module 'sklearn.datasets._base' is in '"),
    ("setuptools._distutils.dir_util:remove_tree:directory={victim}", "its installed packages or edgekd: not model"),
    ("edgekd.train.models:build:spec=cnn", "its installed packages or edgekd: not model code"),
    ("__main__:main", "module '__main__' is part of Python's standard library or the program running edgekd"),
    ("{stdlib}/shutil.py:rmtree:path={victim}", "a folder of Python's standard library"),
    ("{tmp}/reexport.py:make:path={victim}", "is not a function defined there nor an nn.Module class (it comes from "
                                             "'shutil')"),
    ("edgekd_test_reexport:remove:path={victim}/keep.txt", "is not a function defined there"),
])
def test_a_factory_is_a_function_of_the_named_code_or_a_module_class(tmp_path, monkeypatch, spec, fragment):
    """Even when trusted or given on the command line: nothing that acts on its options (the standard
    library, edgekd's dependencies, a re-exported function) is imported or called as a factory."""
    import sysconfig

    victim = _victim(tmp_path)
    (tmp_path / "reexport.py").write_text("from shutil import rmtree as make  # noqa\n")
    (tmp_path / "edgekd_test_reexport.py").write_text("from os import remove  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = spec.format(victim=victim, tmp=tmp_path, stdlib=sysconfig.get_paths()["stdlib"])
    with pytest.raises(ModelError) as info:
        build(spec, (1, 8, 8), 10)
    assert fragment in info.value.message, info.value.message
    assert (victim / "keep.txt").read_text() == "mine\n"


EXITS = {
    "exit0.py": "import sys\n\ndef make(num_classes):\n    sys.exit(0)\n",
    "exit3.py": "import sys\n\ndef make(num_classes):\n    sys.exit(3)\n",
    "exit_on_import.py": "raise SystemExit(0)\n\ndef make(num_classes):\n    pass\n",
    "exit_in_forward.py": ("import sys, torch\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
                           "        sys.exit(0)\n\ndef make(num_classes):\n    return Net()\n"),
}


@pytest.mark.parametrize("name, fragment", [
    ("exit0.py", "exit0.py' raised SystemExit: 0"),
    ("exit3.py", "exit3.py' raised SystemExit: 3"),
    ("exit_on_import.py", "exit_on_import.py' fails to import: SystemExit: 0"),
    ("exit_in_forward.py", "exit_in_forward.py' fails on a batch of input (1, 8, 8): SystemExit: 0"),
])
def test_user_code_that_exits_is_one_model_error_naming_its_file(tmp_path, monkeypatch, name, fragment):
    """sys.exit() in a factory would end distill with exit 0 and no run (a CI step passing)."""
    (tmp_path / name).write_text(EXITS[name])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BaseException) as info:       # not SystemExit: that ends pytest
        Experiment.prepare(load_config(None, **{**SHORT, "student": f"{name}:make"}, out=str(tmp_path / "run")))
    assert isinstance(info.value, ModelError) and fragment in info.value.message, repr(info.value)
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


@pytest.mark.slow
def test_a_factory_that_exits_0_fails_the_real_command(tmp_path):
    (tmp_path / "exit0.py").write_text(EXITS["exit0.py"])
    result = run_cli("distill", "--student", "exit0.py:make", "--folds", "1", "--out", tmp_path / "run", cwd=tmp_path)
    assert_user_error(result, f"model file '{tmp_path}/exit0.py' raised SystemExit: 0")
    assert not (tmp_path / "run").exists()


INTERRUPTS = {
    "factory": "def make(num_classes):\n    raise KeyboardInterrupt\n",
    # the first forward (eager) passes; the second is torch.export's trace, where Ctrl-C lands most often
    "trace": ("import torch\n\nclass Net(torch.nn.Module):\n    calls = 0\n\n    def __init__(self, n):\n"
              "        super().__init__()\n        self.head = torch.nn.Linear(64, n)\n\n    def forward(self, x):\n"
              "        Net.calls += 1\n        if Net.calls > 1:\n            raise KeyboardInterrupt\n"
              "        return self.head(x.flatten(1))\n\ndef make(num_classes):\n    return Net(num_classes)\n"),
}


@pytest.mark.parametrize("where", INTERRUPTS)
def test_ctrl_c_in_user_code_is_an_interrupt_not_a_model_error(tmp_path, where):
    """Ctrl-C while edgekd traces the user's model is the user stopping edgekd: 'error: interrupted',
    exit 130, as anywhere else, and no run folder nor a staged one left (not "cannot be traced")."""
    (tmp_path / "interrupt.py").write_text(INTERRUPTS[where])
    result = run_cli_here("distill", "--student", "interrupt.py:make", "--folds", "1", "--out", tmp_path / "run",
                          cwd=tmp_path)
    assert result.returncode == 130 and result.stderr.strip() == "error: interrupted", result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interrupt.py"]


def test_a_sweep_config_naming_code_runs_nothing_unless_trusted(tmp_path):
    victim = _victim(tmp_path)
    evil, marker = _marker_file(tmp_path)
    base = ["sweep", "--students", "cnn:width=4,depth=1", "--folds", "1", "--out", tmp_path / "sw"]
    for spec in (f"shutil:rmtree:path={victim}", f"{evil}:make"):
        (tmp_path / "c.toml").write_text(f'teacher = "{spec}"\n')
        result = run_cli_here(*base, "--config", tmp_path / "c.toml")
        assert_user_error(result, "c.toml' names Python code to run as the teacher")
        assert spec not in result.stderr.split("hint:")[-1]
    assert not marker.exists()
    (tmp_path / "c.toml").write_text(f'teacher = "shutil:rmtree:path={victim}"\n')
    trusted = run_cli_here(*base, "--config", tmp_path / "c.toml", "--trust-model-code")
    assert_user_error(trusted, "module 'shutil' is part of Python's standard library")   # trusted, still no rmtree
    assert (victim / "keep.txt").is_file() and not (tmp_path / "sw").exists()


@pytest.mark.slow
def test_a_resumed_sweep_folder_naming_other_code_runs_nothing(tmp_path):
    """A sweep folder's students are exported from their model.json: one changed since (a folder
    someone sent, resumed) names code the sweep was not given, which runs only when trusted."""
    from edgekd.app.sweep import run_sweep

    evil, marker = _marker_file(tmp_path)
    cfg = load_config(None, **{**SHORT, "student_epochs": 1})

    def stop_after_distill(event, **info):
        if event == "step" and info["step"] == "distill":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, ["cnn:width=4,depth=1"], tmp_path / "sw", reporter=stop_after_distill)
    spec_path = next((tmp_path / "sw" / "students").iterdir()) / "student" / "model.json"
    spec_path.write_text(json.dumps({**json.loads(spec_path.read_text()), "arch": f"{evil}:make"}))
    with pytest.raises(ModelError, match="names Python code to run") as info:
        run_sweep(cfg, ["cnn:width=4,depth=1"], tmp_path / "sw", resume=True)
    assert str(evil) not in info.value.hint and not marker.exists()
