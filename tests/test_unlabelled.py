"""Transfer sets (``--unlabelled``): each source loads, labelled and held-out images never enter,
the combined loss is the stated sum, every loss trains with it, the steps mix both sets (resumable
bit for bit, sharded over ranks), and bad sources are one error line."""
import copy
import gzip
import math

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd.core.errors import ConfigError, DataError
from edgekd.train.config import load_config
from edgekd.train.data import Dataset
from edgekd.train.data.cache import DataCache
from edgekd.device.images import ImageOptions
from edgekd.train.data.unlabelled import load_transfer
from edgekd.train.distill.augment import Augmenter
from edgekd.train.distill.checkpoints import EpochCheckpoint
from edgekd.train.distill.distributed import Ranks
from edgekd.train.distill.epoch import TransferBatches, batch_order, epoch_steps
from edgekd.train.distill.inference import teacher_outputs
from edgekd.train.distill.losses import KD, LOSSES, LossInputs, build_loss
from edgekd.train.distill.samples import Samples
from edgekd.train.distill.train import FitSettings, KDTarget, Trainee, Transfer, fit
from edgekd.train.models import build

from conftest import assert_user_error, run_cli_here
from test_recipes import RECIPE, convnet, toy_images


def labelled(n=40, test=10, seed=0) -> Dataset:
    """uint8 1×8×8 images (distinct), 2 classes, with a held-out split of its own."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n + test, 1, 8, 8), dtype=np.uint8)
    y = np.arange(n + test) % 2
    return Dataset(x[:n], y[:n], ["a", "b"], "npz:labelled", (x[n:], y[n:]))


def new_images(n, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)


def load(spec, data, tmp_path, images=ImageOptions()):
    return load_transfer(spec, data, images, DataCache(tmp_path / "cache"))


def write_idx(path, x):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in x.shape) + x.tobytes())


# --- the sources ---------------------------------------------------------------------------------

def test_each_source_loads_the_images_without_labels(tmp_path):
    data, extra = labelled(), new_images(7)
    np.savez(tmp_path / "x.npz", x=extra[:, 0])                 # N×H×W: a channel is added
    np.savez(tmp_path / "xy.npz", x=extra, y=np.arange(7))       # labels present: ignored
    write_idx(tmp_path / "images-idx3-ubyte.gz", extra[:, 0])
    (tmp_path / "photos" / "day1" / "deep").mkdir(parents=True)  # no class folders: any depth
    for i, image in enumerate(extra):
        Image.fromarray(image[0]).save(tmp_path / "photos" / ("day1/deep" if i % 2 else "") / f"{i}.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    for spec in ("npz:x.npz", "npz:xy.npz", "idx:images-idx3-ubyte.gz", "folder:photos"):
        name, _, path = spec.partition(":")
        transfer = load(f"{name}:{tmp_path / path}", data, tmp_path)
        assert len(transfer) == 7 and transfer.dropped == 0, spec
        rows = np.asarray(transfer.x)[transfer.keep]
        assert sorted(map(bytes, rows)) == sorted(map(bytes, extra)), spec
    assert load("rest", data, tmp_path) is None          # cut per split by the trio


def test_a_folder_transfer_set_is_decoded_at_the_labelled_shape(tmp_path):
    data = labelled()
    (tmp_path / "big").mkdir()
    Image.new("RGB", (32, 16), (200, 100, 0)).save(tmp_path / "big" / "a.jpg")     # RGB, larger, not square
    transfer = load(f"folder:{tmp_path / 'big'}", data, tmp_path)
    assert transfer.x.shape == (1, 1, 8, 8) and transfer.x.dtype == np.uint8


def test_labelled_and_held_out_images_are_dropped_from_the_transfer_set(tmp_path):
    """A transfer set built to leak: 3 training images, 2 held-out ones and 5 new ones."""
    data, extra = labelled(), new_images(5)
    leaky = np.concatenate([data.x[[0, 5, 9]], data.test[0][[1, 2]], extra])
    np.savez(tmp_path / "leaky.npz", x=leaky)
    transfer = load(f"npz:{tmp_path / 'leaky.npz'}", data, tmp_path)
    assert transfer.dropped == 5 and len(transfer) == 5
    kept = {bytes(row) for row in np.asarray(transfer.x)[transfer.keep]}
    assert kept == {bytes(row) for row in extra}
    assert not kept & {bytes(row) for row in np.concatenate([data.x, data.test[0]])}


@pytest.mark.parametrize("case,fragment", [
    ("empty folder", "no images found under"),
    ("channels", "has samples of shape (3, 8, 8), the labelled data (1, 8, 8)"),
    ("no x", "has no array 'x'"),
    ("missing", "not found"),
    ("all seen", "every image of the transfer set"),
    ("not an image", "cannot read image"),
    ("float", "holds float32 values, the labelled data uint8"),
    ("inflates", "the file inflates to another size"),
    ("bomb", "over the 4,294,967,296 edgekd inflates from a .gz"),
])
def test_a_bad_transfer_set_is_one_data_error(tmp_path, case, fragment):
    data = labelled()
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    np.savez(tmp_path / "rgb.npz", x=np.zeros((4, 3, 8, 8), np.uint8))
    np.savez(tmp_path / "y_only.npz", y=np.arange(4))
    np.savez(tmp_path / "seen.npz", x=data.x[:4])
    np.savez(tmp_path / "float.npz", x=new_images(4).astype(np.float32))
    with gzip.open(tmp_path / "short-idx3-ubyte.gz", "wb") as f:     # promises 3×8×8 bytes, holds 2 images
        f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (3, 8, 8)) + new_images(2).tobytes())
    with gzip.open(tmp_path / "bomb-idx3-ubyte.gz", "wb") as f:      # promises 2^32 × 2^32 × 1 bytes
        f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2**32 - 1, 2**32 - 1, 1)))
    spec = {"empty folder": "folder:empty", "channels": "npz:rgb.npz", "no x": "npz:y_only.npz",
            "missing": "npz:nothing.npz", "all seen": "npz:seen.npz", "not an image": "folder:broken",
            "float": "npz:float.npz", "inflates": "idx:short-idx3-ubyte.gz", "bomb": "idx:bomb-idx3-ubyte.gz"}[case]
    name, _, path = spec.partition(":")
    with pytest.raises(DataError) as info:
        load(f"{name}:{tmp_path / path}", data, tmp_path)
    assert fragment in info.value.message


@pytest.mark.parametrize("options,fragment", [
    ({"unlabelled": "rest", "student_fraction": 1.0}, "--student-fraction 1 withholds none"),
    ({"unlabelled": "rst"}, "did you mean 'rest'"),
    ({"unlabelled": "foldr:photos"}, "did you mean 'folder'"),
    ({"unlabelled": "folder"}, "--unlabelled folder needs a path"),
    ({"unlabelled": "rest:x"}, "takes no path"),
    ({"unlabelled": "rest", "unlabelled_ratio": 0}, "unlabelled ratio must be"),
])
def test_bad_unlabelled_options_are_config_errors(options, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, **options)
    assert fragment in f"{info.value.message} {info.value.hint}"


def test_a_rest_that_the_student_fraction_leaves_empty_is_refused_before_training(tmp_path):
    """Two samples per class: --student-fraction 0.8 takes at least one of each, all of them."""
    from edgekd.train.distill.experiment import Experiment

    x = new_images(4)
    np.savez(tmp_path / "tiny.npz", x=np.concatenate([x, x + 1]), y=np.array([0, 1, 0, 1, 0, 1, 0, 1]))
    cfg = load_config(None, data=f"npz:{tmp_path / 'tiny.npz'}", folds=1, test_fraction=0.5, student_fraction=0.8,
                      unlabelled="rest", out=str(tmp_path / "run"))
    with pytest.raises(DataError, match="--unlabelled rest is empty in fold1"):
        Experiment.prepare(cfg)
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()


def test_the_cli_says_a_bad_transfer_set_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli_here("distill", "--unlabelled", f"folder:{tmp_path / 'empty'}", "--out", tmp_path / "run")
    assert_user_error(result, "no images found under")
    assert not (tmp_path / "run").exists()


# --- the loss ------------------------------------------------------------------------------------

def test_the_combined_loss_is_the_labelled_loss_plus_the_soft_term_on_the_unlabelled_images():
    """Golden values by hand: KD (T 2, alpha 0.25) on 2 labelled rows, its soft term on 3 unlabelled
    rows, each a batch mean, summed. The model is the identity: the inputs are the student's logits."""
    s_l, t_l, y = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], [[1.0, 0.0, 0.0], [0.0, 3.0, -1.0]], [0, 2]
    s_u, t_u = [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [3.0, -2.0, 0.0]], [[0.0, 0.0, 4.0], [2.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    T, alpha = 2.0, 0.25

    def log_softmax(row, t=1.0):
        z = [v / t for v in row]
        top = max(z)
        norm = top + math.log(sum(math.exp(v - top) for v in z))
        return [v - norm for v in z]

    def kl(teacher, student):      # KL(softmax(t/T) ‖ softmax(s/T))
        lt, ls = log_softmax(teacher, T), log_softmax(student, T)
        return sum(math.exp(a) * (a - b) for a, b in zip(lt, ls))

    ce = -sum(log_softmax(s)[c] for s, c in zip(s_l, y)) / 2
    soft_labelled = T * T * sum(kl(t, s) for s, t in zip(s_l, t_l)) / 2
    soft_unlabelled = T * T * sum(kl(t, s) for s, t in zip(s_u, t_u)) / 3
    expected = alpha * ce + (1 - alpha) * soft_labelled + (1 - alpha) * soft_unlabelled

    trainee = Trainee(torch.nn.Identity(), KD(temperature=T, alpha=alpha))
    tensor = torch.tensor
    logits, loss, soft = trainee(tensor(s_l), {"logits": tensor(t_l)}, tensor(y),
                                 transfer=(tensor(s_u), {"logits": tensor(t_u)}))
    assert logits.shape == (2, 3)
    assert float(loss + soft) == pytest.approx(expected, rel=1e-6)
    assert float(soft) == pytest.approx((1 - alpha) * soft_unlabelled, rel=1e-6)


def test_dkd_splits_an_unlabelled_image_on_the_teachers_top_class():
    s_u, t_u = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[0.0, 5.0, 1.0]])
    dkd = build_loss("dkd", warmup=0)
    trainee = Trainee(torch.nn.Identity(), dkd)
    _, _, soft = trainee(torch.tensor([[1.0, 0.0, 0.0]]), {"logits": torch.tensor([[1.0, 0.0, 0.0]])},
                         torch.tensor([0]), transfer=(s_u, {"logits": t_u}))
    assert float(soft) == pytest.approx(float(dkd.soft(LossInputs(s_u, {"logits": t_u}, torch.tensor([1])))))


# --- the steps -----------------------------------------------------------------------------------

def test_an_epoch_is_the_longer_pass_and_the_shorter_set_cycles_in_full_batches():
    transfer = Transfer(torch.zeros(100, 2), ratio=3)
    assert epoch_steps(20, 8, transfer) == math.ceil(100 / 24) == 5           # the transfer set is longer
    assert epoch_steps(200, 8, transfer) == 25                                 # the labelled rows are
    order = batch_order(20, 8, 5, torch.Generator().manual_seed(0))
    assert len(order) == 40 and sorted(order[:20].tolist()) == list(range(20))   # whole passes, then cycling
    assert len(batch_order(20, 8, 3, torch.Generator().manual_seed(0))) == 20    # one pass, last batch short
    assert torch.equal(batch_order(20, 8, 3, torch.Generator().manual_seed(0)),
                       torch.randperm(20, generator=torch.Generator().manual_seed(0)))   # without a transfer set: as before


class FakeLoop:        # what TransferBatches.batch reads of the loop: its ranks and augmenter
    def __init__(self, ranks, augment=None):
        self.ranks, self.augment = ranks, augment


def test_two_ranks_see_each_unlabelled_image_once_per_epoch():
    transfer = Transfer(torch.arange(103, dtype=torch.float32)[:, None], ratio=3)
    steps = epoch_steps(10, 8, transfer)
    seen = []
    for rank in (0, 1):
        batches = TransferBatches(transfer, 24, steps, seed=5, device=torch.device("cpu"))
        for step in range(steps):
            batch = batches.batch(step, FakeLoop(Ranks(rank, 2)), None)
            seen += batch.x[:batch.real, 0].long().tolist()
    assert sorted(seen) == list(range(103))


def test_mixup_pairs_unlabelled_images_with_each_other():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(64, 1, 6, 6)).astype(np.float32))
    batches = TransferBatches(Transfer(x, ratio=2), 32, 2, seed=0, device=torch.device("cpu"))
    batch = batches.batch(0, FakeLoop(Ranks(), Augmenter(("mixup",), torch.zeros(1))), None)
    plain = x[batch.index].flatten(1)
    mixed = batch.x.flatten(1)
    assert not torch.equal(mixed, plain)
    # each mixed image is lam·own + (1 − lam)·another image of the same unlabelled batch
    for own, image in zip(plain, mixed):
        residuals = []
        for other in plain:
            d = own - other
            lam = float((image - other) @ d / (d @ d)) if float(d @ d) else 1.0
            residuals.append(float((image - other - lam * d).norm()))
        assert min(residuals) < 1e-4


def transfer_recipe_run(tmp_path, stop_after=None):
    x, y, pre = toy_images()
    unlabelled = Samples(toy_images(seed=7)[0].raw.numpy(), pre, "cpu")
    teacher = convnet(1).eval()
    fill = torch.from_numpy(-np.asarray(pre["mean"], np.float32) / np.asarray(pre["std"], np.float32))
    kd = KDTarget(build_loss("kd"), teacher=teacher, transfer=Transfer(unlabelled, ratio=2))
    student = convnet(0)

    class Stop(Exception):
        pass

    def stop(record):
        if record["epoch"] == stop_after:
            raise Stop

    settings = FitSettings(**RECIPE, fill=fill)
    checkpoint = EpochCheckpoint(tmp_path) if stop_after is not None or (tmp_path / "epoch.json").exists() else None
    try:
        result = fit(student, x, y, settings, kd=kd, checkpoint=checkpoint, on_epoch=stop)
    except Stop:
        return None, None
    return student, result


@pytest.mark.slow
def test_a_run_with_a_transfer_set_and_the_whole_recipe_resumes_bit_identically(tmp_path):
    """Live teacher, crop, flip, mixup and cutmix on both sets: stopped after epoch 2 and resumed,
    the student ends exactly as an unstopped one; an epoch covers the 96 unlabelled rows at ratio 2."""
    unstopped, result = transfer_recipe_run(tmp_path / "a")
    assert transfer_recipe_run(tmp_path / "b", stop_after=2) == (None, None)
    resumed, again = transfer_recipe_run(tmp_path / "b")
    assert [h["epoch"] for h in again.history] == [1, 2, 3, 4]
    for (name, a), b in zip(unstopped.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert result.history == again.history


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_of_the_registry_trains_with_a_transfer_set(name):
    """Cached teacher outputs of both sets (features for FitNet): the soft term on the unlabelled
    images has a gradient into the student, and a short fit with them trains another student than
    one without them, from the same start."""
    x, y, pre = toy_images()
    unlabelled = Samples(toy_images(seed=7)[0].raw.numpy(), pre, "cpu")
    torch.manual_seed(0)
    teacher, start = build("cnn:width=8,depth=2", (4, 6, 6), 3).eval(), build("cnn:width=4,depth=2", (4, 6, 6), 3)
    students = {}
    for with_transfer in (False, True):
        student, loss = copy.deepcopy(start), build_loss(name)
        torch.manual_seed(1)
        loss.fit_to(student, teacher, x[:2])
        transfer = Transfer(unlabelled, 2, teacher_outputs(teacher, unlabelled, loss.needs)) if with_transfer else None
        kd = KDTarget(loss, teacher_outputs(teacher, x, loss.needs), transfer=transfer)
        if with_transfer:
            _, _, soft = Trainee(student, loss)(x[:4], {k: v[:4] for k, v in kd.outputs.items()}, y[:4],
                                                transfer=(unlabelled[:8], {k: v[:8] for k, v in transfer.outputs.items()}))
            soft.backward()
            assert float(soft.detach()) > 0 and any(float(p.grad.abs().sum()) > 0 for p in student.parameters()), name
            student.zero_grad()
        result = fit(student, x, y, FitSettings(epochs=2, batch_size=16, lr=0.01, weight_decay=0.0, seed=0), kd=kd)
        assert all(math.isfinite(h["loss"]) for h in result.history), name
        students[with_transfer] = student
    assert any(not torch.equal(a, b) for a, b in zip(students[False].state_dict().values(),
                                                     students[True].state_dict().values())), name


# --- a whole run ---------------------------------------------------------------------------------

SMALL = dict(data="digits", teacher="mlp:hidden=64", student="mlp:hidden=8", folds=2, teacher_epochs=3,
             student_epochs=4, student_fraction=0.2, batch_size=64, seed=0)


@pytest.mark.slow
def test_rest_is_each_training_part_without_the_students_labels_and_never_a_validation_image(tmp_path):
    from edgekd.train.distill import run_experiment

    summary = run_experiment(load_config(None, **SMALL, unlabelled="rest", unlabelled_ratio=2, out=str(tmp_path / "r")))
    for split in (*summary["folds"], summary["final"]):
        assert split["unlabelled_samples"] == split["train_samples"] - split["student_samples"]
        student = split["student"]
        # an epoch is the longer pass: the transfer set at 2 per labelled row, the samples counted both
        per_epoch = split["student_samples"] + split["unlabelled_samples"]
        assert student["samples_per_second"] * student["seconds"] >= 4 * per_epoch * 0.9
        # the simple twin takes the student's steps, its labelled rows cycling in full batches of 64
        steps = max(math.ceil(split["student_samples"] / 64), math.ceil(split["unlabelled_samples"] / 128))
        simple = split["simple"]
        assert simple["samples_per_second"] * simple["seconds"] == pytest.approx(4 * steps * 64, rel=0.1)   # seconds are rounded to ms
    assert summary["config"]["unlabelled"] == "rest" and "unlabelled" not in summary["data"]
    log = (tmp_path / "r" / "train.log").read_text()
    assert log.count("transfer set images cached") == 3


@pytest.mark.slow
def test_a_transfer_set_holding_validation_and_test_images_loses_them_with_a_count_in_train_log(tmp_path):
    """digits as an npz: the transfer set is 30 of its own images (CV and held-out alike) and 20 new
    ones (shifted by one pixel): the 30 are dropped, train.log and cv.json say so."""
    from sklearn.datasets import load_digits

    from edgekd.train.distill import run_experiment

    x = load_digits().images.astype(np.uint8)
    np.savez(tmp_path / "data.npz", x=x, y=load_digits().target)
    shifted = np.roll(x[:20], 1, axis=2)
    np.savez(tmp_path / "t.npz", x=np.concatenate([x[::60], shifted]))
    assert len(x[::60]) == 30
    summary = run_experiment(load_config(None, **{**SMALL, "data": f"npz:{tmp_path / 'data.npz'}"},
                                         unlabelled=f"npz:{tmp_path / 't.npz'}", out=str(tmp_path / "run")))
    assert summary["data"]["unlabelled"]["samples"] == 20 and summary["data"]["unlabelled"]["dropped"] == 30
    assert all(split["unlabelled_samples"] == 20 for split in summary["folds"])
    assert "20 unlabelled images, 30 dropped as labelled or held-out samples" in (tmp_path / "run" / "train.log").read_text()


def test_a_transfer_set_stays_the_uint8_cache_it_is_read_from(tmp_path):
    """No float32 copy and no uint8 copy of the images: the kept rows are a view of the memory map
    (100,000 images at 224 px are 15 GB as uint8 and 60 GB as float32)."""
    data, extra = labelled(), new_images(6)
    (tmp_path / "photos").mkdir()
    for i, image in enumerate(extra):
        Image.fromarray(image[0]).save(tmp_path / "photos" / f"{i}.png")
    Image.fromarray(data.x[0, 0]).save(tmp_path / "photos" / "seen.png")
    transfer = load(f"folder:{tmp_path / 'photos'}", data, tmp_path)
    assert isinstance(transfer.x, np.memmap) and transfer.dropped == 1
    samples = Samples(transfer.x, {"mean": [100.0], "std": [50.0]}, "cpu").subset(transfer.keep)
    assert samples.raw.dtype == torch.uint8 and samples.raw.data_ptr() == torch.from_numpy(transfer.x).data_ptr()
    assert len(samples) == 6 and samples[:6].dtype == torch.float32
    assert torch.equal(samples[torch.tensor([0])], (torch.from_numpy(transfer.x[transfer.keep[:1]]).float() - 100) / 50)
