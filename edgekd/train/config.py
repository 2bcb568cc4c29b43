"""Every option of ``distill`` as one dataclass; read from TOML, overridden by the CLI,
written back as the run folder's ``config.toml`` (which re-runs the experiment as is).

Each field is the one declaration of its option: default, help, rule (``option``); the CLI's
options are made from them (``app/cli/distill.py``), and ``validate`` checks each field by its
rule. The dependency runs one way: this module reads the registries of ``distill/`` (losses,
optimizers, augmentations), imported inside the functions that need them (torch); no loss reads
the configuration.
"""
from __future__ import annotations

import inspect
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.core.errors import ConfigError, unknown_name
from edgekd.core.schema.cv import CONFIG_FILE, CONFIG_HEADER
from edgekd.core.schema.tomlfile import parse_toml
from edgekd.core.rules import Check, require
from edgekd.train.options import MEMORY_FORMATS, PRECISIONS, Fraction, Temperature, Unit, between, checks_of, finite

if TYPE_CHECKING:     # numpy, torch: not imported with the configuration (the CLI builds its options from it)
    from edgekd.device.images import ImageOptions
    from edgekd.train.distill.losses import DistillationLoss


def option(default: Any, help: str, check: Check | Any = None, **meta: Any) -> Any:
    """A field of ``DistillConfig`` with what ``edgekd distill`` shows and checks of it (the CLI builds
    its options from these: ``app/cli/distill.py``). ``help`` is the option's help without its default;
    a ``{names}`` in it is filled from ``names()``, a registry's listing, when the help is shown.
    ``check``: a ``Check``, or an ``Annotated`` alias of ``train.options``, the one rule of the value.
    Other keys: ``label`` (its name in messages), ``metavar``, ``default_text`` (the default as shown),
    ``choices`` (a fixed set), ``flag_value`` (the value of the option given alone)."""
    checks = (check,) if isinstance(check, Check) else checks_of(check)
    return field(default=default, metadata={"help": help, "checks": checks, **meta})


# the lists of names in the help, each from its registry (imported when the help is shown: torch)
def _sources() -> list[str]:
    from edgekd.train.data import SOURCES

    def takes_path(name: str) -> bool:
        return inspect.signature(SOURCES.get(name)).parameters["arg"].default is inspect.Parameter.empty
    return [f"{name}:PATH" if takes_path(name) else name for name in SOURCES]


def _transfer_sources() -> list[str]:
    from edgekd.train.data.unlabelled import REST, TRANSFER_SOURCES

    return [REST, *(f"{name}:PATH" for name in TRANSFER_SOURCES)]


def _models() -> list[str]:
    from edgekd.train.models import MODELS

    return MODELS.names()


def _losses() -> list[str]:
    from edgekd.train.distill.losses import LOSSES
    from edgekd.train.models import read_options

    return [f"{name} ({', '.join(read_options(LOSSES.get(name)))})" for name in LOSSES]


def _optimizers() -> list[str]:
    from edgekd.train.distill.optim import OPTIMIZERS

    return OPTIMIZERS.names()


def _augmentations() -> list[str]:
    from edgekd.train.distill.augment import AUGMENTATIONS

    return [f"{name} ({AUGMENTATIONS.get(name)})" for name in AUGMENTATIONS]


def _normalizations() -> list[str]:
    from edgekd.core.preprocess import NORMALIZATIONS

    return list(NORMALIZATIONS)


MODEL_HELP = ("model spec: a zoo NAME:key=value,… or your own factory, MODULE:FACTORY[:key=value,…] or "
              "FILE.py:FACTORY[:key=value,…] (a file path holds no ':'). Your own factory is YOUR CODE, imported "
              "and run here and again by export; it gets num_classes, in_chans/in_channels, input_shape by name "
              "and returns an nn.Module. Zoo: {names}.")


@dataclass
class DistillConfig:
    data: str = option("digits", "Data source: {names} (PATH: a file or a folder).",
                       names=_sources)
    label_column: str | None = option(None, "csv: the column holding the class.", default_text="the last")
    teacher: str = option("cnn:width=64,depth=3", "Teacher " + MODEL_HELP, names=_models)
    student: str = option("cnn:width=8,depth=2", "Student model spec, as --teacher.")
    teacher_from: str | None = option(None, "Bring a teacher: a run folder, a .onnx or a .pt2 file (not retrained).")
    teacher_weights: str | None = option(
        None, "Trained weights for the --teacher architecture: a safetensors state dict, never a pickle "
              "(not retrained, still scored per fold).", metavar="FILE.safetensors")
    temperature: float = option(4.0, "Softmax temperature T of the soft targets.", Temperature)
    alpha: float = option(0.1, "Weight of the hard-label loss.", Unit)
    loss: str = option("kd", "Distillation loss, NAME:key=value,… (the options in brackets): {names}.",
                       metavar="NAME[:key=value,…]", names=_losses, default_text="kd with --temperature and --alpha")
    student_fraction: float = option(0.1, "Part of each training split the student and simple model see.",
                                     Check("in (0, 1]", lambda value: 0.0 < value <= 1.0))
    unlabelled: str | None = option(
        None, "A transfer set without labels, learned from the teacher's soft targets alone (the simple model never "
              "sees it): {names}. rest = the part of each training split --student-fraction withholds the labels of; "
              "folder: every image under DIR; npz: its array x; idx: an images file. Labelled or held-out images in it "
              "are dropped.", metavar="SOURCE", names=_transfer_sources, default_text="none")
    unlabelled_ratio: int = option(3, "With --unlabelled: unlabelled images per labelled one in each step; an epoch "
                                      "is the pass, labelled or unlabelled, that takes more steps.", between(1, 64), metavar="R")
    folds: int = option(5, "Cross-validation folds; 1 = a single split.", between(1, 100))
    test_fraction: float = option(0.2, "Held-out test split.", Check("in (0, 1)", lambda value: 0.0 < value < 1.0))
    teacher_epochs: int = option(15, "Epochs of the teacher.", between(1, 100_000))
    student_epochs: int = option(150, "Epochs of the student and the simple model.", between(1, 100_000))
    qat_epochs: int = option(0, "Then fine-tune the final student N epochs with int8 fake quantization, from the "
                                "same soft targets (quantization-aware distillation, distill/qat.py; export still "
                                "calibrates).", between(0, 100_000), metavar="N", default_text="0 = none")
    batch_size: int = option(32, "Samples per training step.", between(1, 65_536))
    lr: float = option(0.01, "Peak learning rate, cosine-decayed after the warm-up.", finite(True, 10.0),
                       label="learning rate")
    weight_decay: float = option(0.0, "On conv and linear weights only, never biases or norms (distill/optim.py).",
                                 finite(False, 10.0))
    optimizer: str = option("adam", "Optimizer: {names} (sgd: Nesterov, momentum 0.9).", names=_optimizers)
    # on by default: KD's soft term at a high --temperature pulls the logits with their gap to the teacher's,
    # unbounded, where CE's pull is bounded (issue 27: MNIST, T=20, SGD lr 0.05, NaN in one epoch;
    # tests/test_clip_grad.py). timm's train.py (--clip-grad NORM, --clip-mode norm) and torchdistill
    # (max_grad_norm) leave it off unless a recipe asks (Hugging Face's Trainer and mmpretrain's ViTs: 1.0). 10 touches
    # only runaway steps: on digits, the demo's KD student (T=4, Adam) had a median norm of 4.7 and a
    # maximum of 9.4 (5 would clip a third of its steps), its CE-trained models below 6
    clip_grad: float = option(10.0, "Clip each step's gradient (model and loss parameters; teacher, student and "
                                    "simple model alike) to this norm: bounds the steps a high --temperature's "
                                    "soft targets take (SGD). 0 = off.", finite(False, 10_000.0), metavar="NORM")
    warmup_epochs: int = option(0, "Linear learning-rate warm-up over N epochs, then cosine decay.",
                                between(0, 100_000), metavar="N")
    label_smoothing: float = option(0.0, "Smoothing of the hard labels.", Fraction, metavar="EPS")
    augment: str = option("", "Image augmentations per batch, comma-separated: {names}; the teacher sees the same "
                              "augmented batch, run every step (distill/augment.py). none = off.",
                          metavar="LIST", names=_augmentations, flag_value="shift", default_text="none")
    teacher_views: int = option(0, "With --augment (no mixup/cutmix): cache the teacher's logits for K augmented "
                                   "views of each student sample once, epoch e training on view e mod K, instead of "
                                   "running the teacher every step.", between(0, 1000), metavar="K",
                                default_text="0 = live teacher")
    image_size: str | None = option(None, "Images: resize (shorter side, bilinear) and center-crop to N×N or H×W; "
                                          "recorded in model.json and the bundle's manifest.",
                                    metavar="N|H,W", default_text="as stored")
    channels: int | None = option(None, "Images: convert to grayscale (1) or RGB (3).", metavar="1|3",
                                  default_text="as the data is; folder: the first image's")
    normalize: str = option("data", "Standardisation, one of {names}: data = statistics of the training split; imagenet = "
                                    "ImageNet's mean and std (RGB only), for teachers trained with them.",
                            metavar="NAME", names=_normalizations, label="--normalize")
    cache_dir: str | None = option(None, "Where images are decoded once (uint8, memory-mapped; safe to delete).",
                                   metavar="DIR", default_text="$XDG_CACHE_HOME/edgekd or ~/.cache/edgekd")
    seed: int = option(0, "Seed of the splits, the initial weights and the batches.",
                       Check(f"in [0, {2**32 - 1}]", lambda value: 0 <= value < 2**32))  # scikit-learn's random_state
    device: str = option("cpu", "cuda: mixed precision on the GPU; auto: cuda when present.",
                         choices=("cpu", "cuda", "auto"))
    precision: str = option("auto", "The training step's precision: bf16 (autocast; weights, optimizer and loss stay "
                                    "fp32) where the hardware has it natively, fp32 elsewhere; auto = bf16 on a CPU with "
                                    "AMX or AVX512-BF16 for models whose convolutions are all dense (depthwise ones "
                                    "train slower in it), on a GPU where it has bf16 (else fp16); recorded per model "
                                    "in train.log and cv.json.", choices=PRECISIONS)
    memory_format: str = option("auto", "Memory format of the training step: auto = channels_last for models with "
                                        "2-D convolutions (faster for each one measured: benchmarks/train_speed.py), "
                                        "contiguous otherwise.",
                                choices=MEMORY_FORMATS)
    compile: bool = option(False, "torch.compile the training step: a one-time compilation per model, then faster "
                                  "steps where the compiler helps (benchmarks/train_speed.py measures it).")
    backend: str = option("auto", "Process group under torchrun: auto = nccl on CUDA, gloo on CPU.",
                          choices=("auto", "gloo", "nccl"))
    out: str = option("runs/demo", "Run folder to write.")

    def __post_init__(self) -> None:
        # a user model's file is recorded absolute (config.toml, model.json): export and a re-run
        # rebuild the model from it, from whatever folder they run in
        from edgekd.train.models.user import absolute_spec

        self.teacher, self.student = absolute_spec(self.teacher), absolute_spec(self.student)

    def validate(self) -> None:
        """Reject impossible values before anything is loaded or written: each field by the rule
        its ``option`` declares, then the rules between fields and the registries' names."""
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        self._check_warmup()
        self._check_choices()
        self._check_transfer()

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
        from edgekd.core.preprocess import NORMALIZATIONS
        from edgekd.train.distill.augment import MIXING, parse_augment   # torch: only a distill run validates
        from edgekd.train.distill.losses import logit_losses, parse_loss
        from edgekd.train.distill.optim import OPTIMIZERS

        augment = parse_augment(self.augment)
        OPTIMIZERS.get(self.optimizer)
        loss = parse_loss(self.loss)[0]
        if self.qat_epochs and "features" in loss.needs:
            raise ConfigError(f"--qat-epochs fine-tunes an exported graph of the student, which has no "
                              f"forward_features for the feature loss '{self.loss}'",
                              hint=f"use {logit_losses()} with --qat-epochs, or drop --qat-epochs")
        mixing = [name for name in augment if name in MIXING]
        if self.teacher_views and (mixing or not augment):
            raise ConfigError(f"--teacher-views caches views of each sample, which {', '.join(mixing)} mixes "
                              "with another one of its batch" if mixing else
                              "--teacher-views caches augmented views, but --augment is off",
                              hint="drop --teacher-views (the teacher then runs every step), or "
                                   + (f"drop {'/'.join(MIXING)}" if mixing else "give --augment crop,flip or the like"))
        if self.normalize not in NORMALIZATIONS:
            raise unknown_name("--normalize", self.normalize, NORMALIZATIONS, ConfigError)
        self.image_options()
        if self.teacher_weights is not None and self.teacher_from is not None:
            raise ConfigError("--teacher-weights and --teacher-from both bring a teacher: give one",
                              hint="--teacher-weights: a state dict for --teacher; --teacher-from: a whole model")

    def _check_transfer(self) -> None:
        from edgekd.train.data.unlabelled import REST, TRANSFER_SOURCES
        from edgekd.train.distill.losses import parse_loss

        if self.unlabelled is None:
            return
        loss = parse_loss(self.loss)[0]
        if not loss.takes_unlabelled():
            raise ConfigError(f"--unlabelled trains on the teacher's term of the loss alone, and the loss "
                              f"'{self.loss}' has none (no soft(batch))", hint="give the loss a soft(batch) method "
                              "(edgekd/train/distill/losses.py), or use one of the built-in losses")
        name, _, arg = self.unlabelled.partition(":")
        if name == REST and arg:
            raise ConfigError(f"--unlabelled rest takes no path, got '{self.unlabelled}'", hint="use --unlabelled rest")
        if name != REST and name not in TRANSFER_SOURCES:
            raise unknown_name("--unlabelled source", name, [REST, *TRANSFER_SOURCES], ConfigError)
        if name != REST and not arg:
            raise ConfigError(f"--unlabelled {name} needs a path", hint=f"example: --unlabelled {name}:PATH")
        if name == REST and self.student_fraction >= 1.0:
            raise ConfigError("--unlabelled rest is the part of each training split whose labels --student-fraction "
                              "withholds, and --student-fraction 1 withholds none",
                              hint="give --student-fraction 0.1 (say), or a transfer set of your own images")

    def image_options(self) -> ImageOptions:
        """``--image-size`` and ``--channels`` parsed (a ConfigError when bad)."""
        from edgekd.device.images import ImageOptions     # numpy: the CLI imports this module for its options

        return ImageOptions.parse(self.image_size, self.channels)

    def distillation_loss(self) -> DistillationLoss:
        """The run's loss: ``loss``'s options, and for those it leaves out that the class takes from
        the run's configuration (its ``config_defaults``), the run's values."""
        from edgekd.train.distill.losses import parse_loss

        cls, options = parse_loss(self.loss)
        defaults = {key: getattr(self, key) for key in cls.config_defaults if key not in options}
        return cls(**defaults, **options)

    def to_toml(self) -> str:
        lines = [f"{CONFIG_HEADER}; re-run with: edgekd distill --config {CONFIG_FILE}"]
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                lines.append(f"{f.name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def _check_field(f: Field, value: Any) -> None:
    """``value`` of field ``f`` by its declared rules: its checks, or its fixed choices."""
    if value is None:
        return
    label = f.metadata.get("label", f.name.replace("_", " "))
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise unknown_name(label, value, choices, ConfigError)
    require(f.metadata["checks"], value, label)


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
        values[key] = _coerce(key, value, str(known[key].type), path)   # a string: annotations are postponed
    config = DistillConfig(**values)
    config.validate()
    return config


def _check_key(key: str, value, known: dict, path: Path | None) -> None:
    """A config file is one flat table of DistillConfig's keys: name a stray key or [table]."""
    if isinstance(value, dict):
        raise ConfigError(f"'{path}' has a table [{key}], but a distill config has no tables",
                          hint="write its keys at the top level, before any [table] line; "
                               f"known keys: {', '.join(sorted(known))}")
    if key not in known:
        error = unknown_name("key", key, known, ConfigError)
        raise ConfigError(f"{error.message} in '{path}'", hint=error.hint)


def _refuse_code(values: dict, overrides: dict, path: Path | None) -> None:
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

