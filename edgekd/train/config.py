"""Every option of ``distill`` as one dataclass; read from TOML, overridden by the CLI,
written back as the run folder's ``config.toml`` (which re-runs the experiment as is)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from edgekd.train.data.images import ImageOptions
from edgekd.train.data.preprocess import NORMALIZATIONS
from edgekd.core.errors import ConfigError, unknown_name
from edgekd.core.schema.cv import CONFIG_FILE, CONFIG_HEADER
from edgekd.core.schema.tomlfile import parse_toml


#: the sane range of each whole-number option: beyond it a value is a typo, not a wish
WHOLE_RANGES = {"folds": (1, 100), "teacher_epochs": (1, 100_000), "student_epochs": (1, 100_000),
                "batch_size": (1, 65_536), "qat_epochs": (0, 100_000), "warmup_epochs": (0, 100_000),
                "teacher_views": (0, 1000)}
MAX_TEMPERATURE, MAX_LR, MAX_WEIGHT_DECAY = 1000.0, 10.0, 10.0
#: the finite-number options: (name in messages, must be > 0 rather than >= 0, the largest sane value)
FLOAT_RANGES = {"temperature": ("temperature", True, MAX_TEMPERATURE), "lr": ("learning rate", True, MAX_LR),
                "weight_decay": ("weight decay", False, MAX_WEIGHT_DECAY)}


@dataclass
class DistillConfig:
    data: str = "digits"
    label_column: str | None = None
    teacher: str = "cnn:width=64,depth=3"
    student: str = "cnn:width=8,depth=2"
    teacher_from: str | None = None
    teacher_weights: str | None = None   # a safetensors state dict for `teacher` (then not trained)
    temperature: float = 4.0
    alpha: float = 0.1
    loss: str = "kd"             # NAME[,key=value,…]: kd | dkd | fitnet (distill/losses.py)
    student_fraction: float = 0.1
    folds: int = 5
    test_fraction: float = 0.2
    teacher_epochs: int = 15
    student_epochs: int = 150
    qat_epochs: int = 0          # quantization-aware distillation of the final student (distill/qat.py); 0 = none
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 0.0    # on weights of 2+ dimensions only (distill/optim.py)
    optimizer: str = "adam"      # adam | adamw | sgd (Nesterov, momentum 0.9)
    warmup_epochs: int = 0       # linear warm-up of the learning rate, then cosine decay
    label_smoothing: float = 0.0
    augment: str = ""            # comma-separated: crop, shift, flip, mixup, cutmix (distill/augment.py)
    teacher_views: int = 0       # > 0: the teacher's logits cached for this many augmented views (else live)
    image_size: str | None = None    # "N" or "H,W": images resized (shorter side) and center-cropped to it
    channels: int | None = None      # 1 or 3: images converted to grayscale or RGB; None: as the data is
    normalize: str = "data"          # data: statistics of the training split; imagenet: ImageNet's
    cache_dir: str | None = None     # the decoded-image cache; None: $XDG_CACHE_HOME/edgekd or ~/.cache/edgekd
    seed: int = 0
    device: str = "cpu"
    compile: bool = False        # torch.compile of the training step (benchmarks/distill_overhead.py measures it)
    backend: str = "auto"        # torchrun's process group: auto = nccl on CUDA, gloo on CPU
    out: str = "runs/demo"

    def __post_init__(self) -> None:
        # a user model's file is recorded absolute (config.toml, model.json): export and a re-run
        # rebuild the model from it, from whatever folder they run in
        from edgekd.train.models.user import absolute_spec

        self.teacher, self.student = absolute_spec(self.teacher), absolute_spec(self.student)

    def validate(self) -> None:
        """Reject impossible values before anything is loaded or written."""
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}", hint="alpha weighs the hard labels")
        if not 0.0 < self.student_fraction <= 1.0:
            raise ConfigError(f"student fraction must be in (0, 1], got {self.student_fraction}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test fraction must be in (0, 1), got {self.test_fraction}")
        for name, (low, high) in WHOLE_RANGES.items():
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name.replace('_', ' ')} must be at least {low} and at most {high}, "
                                  f"got {getattr(self, name)}")
        if not 0 <= self.seed < 2**32:      # the range scikit-learn's splitters accept as random_state
            raise ConfigError(f"seed must be in [0, {2**32 - 1}], got {self.seed}")
        for name, (what, above_zero, high) in FLOAT_RANGES.items():
            _check_finite(what, getattr(self, name), above_zero, high)
        if not (math.isfinite(self.label_smoothing) and 0.0 <= self.label_smoothing < 1.0):
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        self._check_warmup()
        self._check_choices()

    def _check_warmup(self) -> None:
        trained = [("student", self.student_epochs)]
        if self.teacher_from is None and self.teacher_weights is None:
            trained.insert(0, ("teacher", self.teacher_epochs))
        for role, epochs in trained:
            if self.warmup_epochs >= epochs:
                raise ConfigError(f"a warm-up of {self.warmup_epochs} epochs leaves no epoch at the full learning "
                                  f"rate for the {role}'s {epochs}",
                                  hint=f"use --warmup-epochs {epochs - 1} or fewer")

    def _check_choices(self) -> None:
        from edgekd.train.distill.augment import parse_augment     # torch: only a distill run validates its config
        from edgekd.train.distill.losses import parse_loss
        from edgekd.train.distill.optim import OPTIMIZERS

        augment = parse_augment(self.augment)
        OPTIMIZERS.get(self.optimizer)
        loss = parse_loss(self.loss)[0]
        if self.qat_epochs and "features" in loss.needs:
            raise ConfigError(f"--qat-epochs fine-tunes an exported graph of the student, which has no "
                              f"forward_features for the feature loss '{self.loss}'",
                              hint="use --loss kd or dkd with --qat-epochs, or drop --qat-epochs")
        mixing = [name for name in augment if name in ("mixup", "cutmix")]
        if self.teacher_views and (mixing or not augment):
            raise ConfigError(f"--teacher-views caches views of each sample, which {', '.join(mixing)} mixes "
                              "with another one of its batch" if mixing else
                              "--teacher-views caches augmented views, but --augment is off",
                              hint="drop --teacher-views (the teacher then runs every step), or "
                                   + ("drop mixup/cutmix" if mixing else "give --augment crop,flip or the like"))
        if self.device not in ("cpu", "cuda", "auto"):
            raise unknown_name("device", self.device, ["cpu", "cuda", "auto"], ConfigError)
        if self.backend not in ("auto", "gloo", "nccl"):
            raise unknown_name("backend", self.backend, ["auto", "gloo", "nccl"], ConfigError)
        if self.normalize not in NORMALIZATIONS:
            raise unknown_name("--normalize", self.normalize, NORMALIZATIONS, ConfigError)
        self.image_options()
        if self.teacher_weights is not None and self.teacher_from is not None:
            raise ConfigError("--teacher-weights and --teacher-from both bring a teacher: give one",
                              hint="--teacher-weights: a state dict for --teacher; --teacher-from: a whole model")

    def image_options(self) -> ImageOptions:
        """``--image-size`` and ``--channels`` parsed (a ConfigError when bad)."""
        return ImageOptions.parse(self.image_size, self.channels)

    def to_toml(self) -> str:
        lines = [f"{CONFIG_HEADER}; re-run with: edgekd distill --config {CONFIG_FILE}"]
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                lines.append(f"{f.name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _check_finite(what: str, value: float, above_zero: bool, high: float) -> None:
    low_ok = value > 0 if above_zero else value >= 0
    if not (math.isfinite(value) and low_ok and value <= high):
        raise ConfigError(f"{what} must be a finite number {'>' if above_zero else '>='} 0 and at most {high:g}, "
                          f"got {value}")


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_config(path: str | Path | None = None, trust_model_code: bool = False, **overrides) -> DistillConfig:
    """Defaults ← TOML file ← CLI overrides (``None`` means "not given"). A model of the file that
    names code (``MODULE:FACTORY``, ``FILE.py:FACTORY``) is refused unless ``trust_model_code``:
    the same spec given as an override is the caller's own."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' not found")
        values = parse_toml(path.read_bytes(), f"'{path}'", "distill config", ConfigError)
    known = {f.name: f for f in fields(DistillConfig)}
    for key, value in values.items():
        _check_key(key, value, known, path)
    if not trust_model_code:
        _refuse_code(values, overrides, path)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(values.get("augment"), bool):     # a run of an earlier edgekd: augment was on/off (shifts)
        values["augment"] = "shift" if values["augment"] else ""
    for key, value in values.items():
        values[key] = _coerce(key, value, known[key].type, path)
    config = DistillConfig(**values)
    config.validate()
    return config


def _check_key(key: str, value, known: dict, path: Path) -> None:
    """A config file is one flat table of DistillConfig's keys: name a stray key or [table]."""
    if isinstance(value, dict):
        raise ConfigError(f"'{path}' has a table [{key}], but a distill config has no tables",
                          hint="write its keys at the top level, before any [table] line; "
                               f"known keys: {', '.join(sorted(known))}")
    if key not in known:
        error = unknown_name("key", key, known, ConfigError)
        raise ConfigError(f"{error.message} in '{path}'", hint=error.hint)


def _refuse_code(values: dict, overrides: dict, path: Path) -> None:
    """A config file is a file edgekd is given, and one someone sent (a run's config.toml, which the
    README says re-runs it) must not run code by being used: its user models only when trusted."""
    from edgekd.train.models.user import parse_user_spec       # the zoo's names tell a zoo spec from code

    for key in ("teacher", "student"):
        spec = values.get(key)
        if overrides.get(key) is None and isinstance(spec, str) and parse_user_spec(spec) is not None:
            raise ConfigError(f"'{path}' names Python code to run as the {key} ({spec!r}); edgekd runs code "
                              "named in a file only when told to trust it",
                              hint=f"read the file first; if you wrote it (or it is a run you made), pass "
                                   f"--trust-model-code, or give --{key} on the command line")


def _coerce(key: str, value, annotation: str, path):
    kind = annotation.split("|")[0].strip()
    if key == "image_size" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)            # image_size = 96 in a config file means "96"
    caster = {"int": int, "float": float, "bool": bool, "str": str}[kind]
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, caster) or (kind == "int" and isinstance(value, bool)):
        raise ConfigError(f"'{key}' must be {kind}, got {value!r}" + (f" in '{path}'" if path else ""))
    return value

