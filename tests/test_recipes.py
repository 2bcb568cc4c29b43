"""Training recipes: batch augmentation (against independent per-image computations), the
optimizers and schedule, raw samples standardised per batch, and the consistent teacher."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgekd.train.config import load_config
from edgekd.core.preprocess import fit_standardize, standardize
from edgekd.train.distill.augment import Augmenter, cutmix, mixup, parse_augment, random_boxes, resized_crop
from edgekd.train.distill.checkpoints import EpochCheckpoint
from edgekd.train.distill.fastpath import native_bf16
from edgekd.train.distill.losses import KD, build_loss
from edgekd.train.distill.optim import build_optimizer, learning_rate
from edgekd.train.distill.samples import Samples
from edgekd.train.distill.inference import cached_views, predict_logits
from edgekd.train.distill.train import FitSettings, KDTarget, fit
from edgekd.core.errors import ConfigError


def images(n=6, c=2, h=8, w=8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, c, h, w)).astype(np.float32))


def test_augment_lists_parse_and_bad_ones_name_the_closest():
    assert parse_augment("crop, flip,mixup") == ("crop", "flip", "mixup")
    assert parse_augment("") == () and parse_augment("none") == ()
    with pytest.raises(ConfigError) as info:
        parse_augment("crop,flipp")
    assert "unknown augmentation 'flipp'" in info.value.message and "did you mean 'flip'?" in info.value.hint
    for bad, fragment in (("flip,flip", "names flip twice"), ("crop,shift", "both translate")):
        with pytest.raises(ConfigError, match=fragment):
            parse_augment(bad)


def test_crop_is_a_translation_by_up_to_an_eighth_filled_with_the_empty_pixel():
    """28-px images: each output is its own image moved by (dy, dx) in [-4, 4]², the uncovered
    border the fill (a raw 0 after standardisation), found by brute force per image."""
    x, fill = images(h=28, w=28), torch.tensor([-1.5, 2.5])
    out, mixed = Augmenter(("crop",), fill)(x, torch.zeros(6, dtype=torch.long), torch.Generator().manual_seed(3))
    assert mixed is None and out.shape == x.shape
    moves = set()
    for image, moved in zip(x.numpy(), out.numpy()):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                 if np.array_equal(moved, translated(image, dy, dx, fill.numpy()))]
        assert len(found) == 1
        moves.add(found[0])
    assert len(moves) > 1          # not one offset for the batch


def translated(image, dy, dx, fill):
    """``image`` (C×H×W) moved by (dy, dx), the rest ``fill`` per channel: the numpy reference."""
    c, h, w = image.shape
    out = np.broadcast_to(fill[:, None, None], image.shape).copy()
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_flip_mirrors_about_half_of_the_images_and_keeps_the_rest():
    x = images(n=200)
    out, _ = Augmenter(("flip",), torch.zeros(2))(x, torch.zeros(200, dtype=torch.long), torch.Generator().manual_seed(0))
    mirrored = [bool(torch.equal(o, i.flip(2))) for o, i in zip(out, x)]
    kept = [bool(torch.equal(o, i)) for o, i in zip(out, x)]
    assert all(m != k for m, k in zip(mirrored, kept))
    assert 70 < sum(mirrored) < 130


def test_mixup_mixes_inputs_and_labels_with_one_weight():
    x, y = images(), torch.arange(6)
    out, (partner, weight) = mixup(x, y, np.random.default_rng(0))
    assert 0.0 <= weight <= 1.0
    assert torch.allclose(out, weight * x + (1 - weight) * x.flip(0))
    assert torch.equal(partner, y.flip(0))


def test_cutmix_pastes_one_box_of_the_partner_and_weighs_by_the_area_left():
    x, y = images(h=16, w=16), torch.arange(6)
    for seed in range(20):
        out, (partner, weight) = cutmix(x, y, np.random.default_rng(seed))
        from_partner = (out == x.flip(0)) & (out != x)
        pasted = from_partner.all(dim=(0, 1))            # pixels taken from the partner in every image and channel
        rows, cols = torch.nonzero(pasted, as_tuple=True)
        if len(rows):                                    # a rectangle, and the weight is the area outside it
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box == len(rows)
            assert weight == pytest.approx(1 - len(rows) / 256)
        assert torch.equal(out[:, :, ~pasted], x[:, :, ~pasted])
        assert torch.equal(partner, y.flip(0))


def test_resized_crop_keeps_the_size_and_the_range_of_values():
    ramp = torch.linspace(0, 1, 64).expand(4, 1, 64, 64).contiguous()     # brighter to the right
    out = resized_crop(ramp, random_boxes(4, torch.Generator().manual_seed(0)))
    assert out.shape == ramp.shape and out.min() >= 0 and out.max() <= 1
    assert (out.diff(dim=3) >= -1e-6).all()            # a crop of a ramp is a ramp: no flip, no rotation
    assert not torch.allclose(out, ramp)               # zoomed: steeper than the original
    assert Augmenter(("crop",), torch.zeros(1))(ramp, torch.zeros(4, dtype=torch.long),
                                                torch.Generator().manual_seed(0))[0].shape == ramp.shape


def test_learning_rate_warms_up_linearly_then_decays_as_a_cosine():
    assert [learning_rate(1.0, e, 10, 0) for e in range(10)] == [0.5 * (1 + math.cos(math.pi * e / 10))
                                                                 for e in range(10)]
    warm = [learning_rate(0.3, e, 10, 3) for e in range(10)]
    assert warm[:3] == pytest.approx([0.075, 0.15, 0.225]) and warm[3] == pytest.approx(0.3)
    assert all(a > b for a, b in zip(warm[3:], warm[4:]))


def test_weight_decay_skips_biases_and_norms_and_sgd_is_nesterov():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    optimizer = build_optimizer("sgd", model, 0.1, 5e-4)
    decayed, kept = optimizer.param_groups
    assert {p.ndim for p in decayed["params"]} == {2, 4} and decayed["weight_decay"] == 5e-4
    assert {p.ndim for p in kept["params"]} == {1} and kept["weight_decay"] == 0.0 and len(kept["params"]) == 4
    assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9
    assert type(build_optimizer("adamw", model, 0.1, 0.0)).__name__ == "AdamW"
    with pytest.raises(ConfigError) as info:
        build_optimizer("adamv", model, 0.1, 0.0)
    assert "did you mean 'adam" in info.value.hint


def test_uint8_samples_stay_uint8_and_standardise_per_batch_as_the_whole_array_would():
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 6, 6), dtype=np.uint8)
    pre = fit_standardize(x)
    samples = Samples(x, pre, "cpu")
    assert samples.raw.dtype == torch.uint8 and len(samples) == 50
    index = torch.tensor([7, 3, 49, 0])
    assert torch.allclose(samples[index], torch.from_numpy(standardize(pre, x[index.numpy()])), atol=1e-5)
    part = samples.subset(np.array([1, 4, 9]))
    assert part.raw.dtype == torch.uint8 and torch.allclose(part[:], samples[torch.tensor([1, 4, 9])])
    assert samples.subset(np.arange(50)) is samples


def toy_images(seed=0):
    """96 4×6×6 uint8 images, 3 classes told apart by the brightness of a channel."""
    rng = np.random.default_rng(seed)
    y = np.arange(96) % 3
    x = rng.integers(0, 120, (96, 4, 6, 6), dtype=np.uint8)
    x[np.arange(96), y] += 100
    pre = fit_standardize(x)
    return Samples(x, pre, "cpu"), torch.from_numpy(y), pre


def convnet(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3))


RECIPE = dict(epochs=4, batch_size=16, lr=0.05, weight_decay=1e-3, seed=2, augment=("crop", "flip", "mixup", "cutmix"),
              optimizer="sgd", warmup_epochs=1, label_smoothing=0.1)


@pytest.mark.slow
def test_the_teacher_sees_exactly_the_students_augmented_batch():
    x, y, pre = toy_images()
    seen = {"student": [], "teacher": []}
    student, teacher = convnet(0), convnet(1).eval()
    hooks = [m.register_forward_hook(lambda _m, inputs, _o, role=role: seen[role].append(inputs[0].clone()))
             for m, role in ((student[0], "student"), (teacher[0], "teacher"))]
    fill = torch.from_numpy(-np.asarray(pre["mean"], np.float32) / np.asarray(pre["std"], np.float32))
    fit(student, x, y, FitSettings(**RECIPE, fill=fill), kd=KDTarget(build_loss("kd"), teacher=teacher))
    for hook in hooks:
        hook.remove()
    assert len(seen["student"]) == len(seen["teacher"]) == 4 * 6
    assert all(torch.equal(s, t) for s, t in zip(seen["student"], seen["teacher"]))
    assert not any(torch.equal(s, x[:16]) for s in seen["student"])


class RecordingKD(KD):
    """Hinton et al.'s KD (arXiv:1503.02531) that keeps the teacher logits of every step."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, batch):
        self.seen.append(batch.teacher["logits"].clone())
        return super().forward(batch)


@pytest.mark.slow
def test_teacher_views_give_each_step_the_teachers_logits_of_the_very_images_the_student_sees():
    """--teacher-views 2: cached, and consistent: the logits a step learns from are the teacher's
    on that step's augmented batch; epochs 0 and 2 train on the same view, epoch 1 on the other."""
    x, y, pre = toy_images()
    teacher, student = convnet(1).eval(), convnet(0)
    augmenter = Augmenter(("crop", "flip"), torch.zeros(4))
    views, outputs = cached_views(teacher, x, augmenter, 2, torch.Generator().manual_seed(5), ("logits",))
    assert outputs["logits"].shape == (2, 96, 3) and not torch.equal(outputs["logits"][0], outputs["logits"][1])
    inputs = []
    hook = student[0].register_forward_hook(lambda _m, args, _o: inputs.append(args[0].clone()))
    loss = RecordingKD()
    settings = FitSettings(epochs=3, batch_size=32, lr=0.05, weight_decay=0.0, seed=0, augment=("crop", "flip"))
    fit(student, x, y, settings, kd=KDTarget(loss, outputs, views=views))
    hook.remove()
    assert len(loss.seen) == len(inputs) == 9
    for images, logits in zip(inputs, loss.seen):
        assert torch.allclose(predict_logits(teacher, images), logits, atol=1e-5)
    epoch = [sorted(map(tuple, torch.cat(inputs[3 * e:3 * e + 3]).flatten(1).tolist())) for e in range(3)]
    assert epoch[0] == epoch[2] and epoch[0] != epoch[1]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_with_the_whole_recipe_resumes_bit_identically(tmp_path, precision):
    """SGD momentum, warm-up, smoothing and all four augmentations are functions of (seed, epoch):
    stopped after epoch 2 and resumed, the model ends exactly as an unstopped one, in either precision
    (channels_last, the default for a convolutional model, both times)."""
    if precision == "bf16" and native_bf16("cpu") is None:
        pytest.skip("this CPU has no native bf16")
    x, y, _ = toy_images()
    settings = FitSettings(**RECIPE, precision=precision)
    unstopped = convnet(0)
    fit(unstopped, x, y, settings)

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    stopped = convnet(0)
    with pytest.raises(Stop):
        fit(stopped, x, y, settings, checkpoint=EpochCheckpoint(tmp_path), on_epoch=stop_after_two)
    resumed = convnet(0)
    # asked for the other precision now: the interrupted stage's own goes on
    other = replace(settings, precision="fp32" if precision == "bf16" else "bf16")
    result = fit(resumed, x, y, other, checkpoint=EpochCheckpoint(tmp_path))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4] and 0 <= result.data_wait < 1
    assert (result.mode.precision, result.mode.channels_last) == (precision, True)
    for (name, a), b in zip(unstopped.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
        assert b.is_contiguous(), name         # back in the layout export and the checkpoints expect


@pytest.mark.parametrize("options,fragment", [
    ({"augment": "flipp"}, "did you mean 'flip'"),
    ({"optimizer": "sdg"}, "did you mean 'sgd'"),
    ({"warmup_epochs": 15}, "leaves no epoch at the full learning rate for the teacher's 15"),
    ({"warmup_epochs": 20, "teacher_epochs": 30}, "for the student's 20"),
    ({"label_smoothing": 1.0}, "label smoothing must be in [0, 1)"),
    ({"teacher_views": 4, "augment": "crop,mixup"}, "which mixup mixes with another one of its batch"),
    ({"teacher_views": 4}, "but --augment is off"),
])
def test_bad_recipe_options_are_config_errors(options, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, student_epochs=20, **options)
    assert fragment in f"{info.value.message} {info.value.hint}"


@pytest.mark.slow
def test_a_distill_run_with_teacher_views_caches_them_and_records_the_recipe(tmp_path):
    from conftest import TINY

    from edgekd.train.distill import run_experiment

    cfg = load_config(None, **{**TINY, "teacher_epochs": 2, "student_epochs": 4}, augment="crop,flip", teacher_views=3,
                      optimizer="adamw", warmup_epochs=1, label_smoothing=0.1, out=str(tmp_path / "run"))
    summary = run_experiment(cfg)
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("student samples in 3 augmented views cached") == 3          # 2 folds + final
    assert "of it making batches" in log
    assert {key: summary["config"][key] for key in ("augment", "teacher_views", "optimizer", "warmup_epochs",
                                                    "label_smoothing")} == \
        {"augment": "crop,flip", "teacher_views": 3, "optimizer": "adamw", "warmup_epochs": 1, "label_smoothing": 0.1}
    assert summary["test"]["teacher"] > 0.5


@pytest.mark.slow
def test_a_compiled_training_step_trains_as_the_eager_one():
    """--compile: torch.compile of model + loss; the same losses as eager (up to float reordering: in
    fp32, since bf16's rounding differs wherever the compiler fuses) and the weights stay in the module
    the checkpoint saves."""
    x, y, _ = toy_images()
    runs = []
    for compiled in (False, True):
        model = convnet(0)
        result = fit(model, x, y, FitSettings(epochs=2, batch_size=32, lr=0.05, weight_decay=0.0, seed=0,
                                              optimizer="sgd", compile=compiled, precision="fp32"))
        runs.append((model, [h["loss"] for h in result.history]))
        if compiled:    # train.log's one-time cost: the first epoch compiles
            assert result.compile_seconds() > 0 and len(result.epoch_seconds) == 2
    assert runs[1][1] == pytest.approx(runs[0][1], rel=1e-4)
    # SGD: Adam would scale the rounding noise of near-zero gradients (the bias before BatchNorm) up to full steps
    eager, compiled = (predict_logits(model, x[:]) for model, _ in runs)
    assert torch.allclose(eager, compiled, atol=1e-3)


@pytest.mark.slow
def test_every_fit_of_a_run_compiles_past_dynamos_recompile_limit():
    """A run fits many models (folds × roles); dynamo's guards on the one Trainee.forward would pass its
    limit of 8 and silently train the rest eager: each fit starts dynamo afresh, so the tenth compiles too."""
    x, y, _ = toy_images()
    settings = FitSettings(epochs=2, batch_size=32, lr=0.05, weight_decay=0.0, seed=0, optimizer="sgd",
                           compile=True, precision="fp32")
    extra = [fit(convnet(seed), x, y, settings).compile_seconds() for seed in range(10)]
    eager = fit(convnet(0), x, y, replace(settings, compile=False)).compile_seconds()
    assert min(extra[8:]) > max(0.05, 5 * abs(eager)), (extra, eager)
