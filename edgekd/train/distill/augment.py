"""Batch augmentation for ``--augment LIST``: one table (``AUGMENTATIONS``), applied per batch with
tensor ops on whatever device trains (no per-sample Python), in a fixed order: the geometric ones
(``crop``, ``shift``, ``flip``) per sample, then at most one mixing one (``mixup`` or ``cutmix``)
per batch.

Every draw comes from the caller's generator, seeded per epoch, so a resumed run augments exactly
as an unstopped one. The teacher sees the augmented batch itself (consistent teaching: Beyer et
al. 2022, "Knowledge distillation: A good teacher is patient and consistent", arXiv:2106.05237).
Batches arrive standardised; ``fill`` is where a raw 0 (an empty pixel) lands, per channel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgekd.core.errors import ConfigError
from edgekd.core.registry import Registry

AUGMENTATIONS: Registry[str] = Registry("augmentation", ConfigError)
for _name, _what in (("crop", "pad-and-random-crop by 1/8 of the size; random-resized-crop from 64 px"),
                     ("shift", "random 1-pixel shifts"), ("flip", "horizontal flip of half the images"),
                     ("mixup", "mixup of pairs, Beta(0.2, 0.2): Zhang et al. 2018, arXiv:1710.09412"),
                     ("cutmix", "CutMix of pairs, Beta(1, 1): Yun et al. 2019, arXiv:1905.04899")):
    AUGMENTATIONS.register(_name)(_what)
MIXING = ("mixup", "cutmix")
RESIZED_CROP_FROM = 64          # below it, the pad-and-crop of CIFAR recipes; from it, ImageNet's kind
CROP_AREA, CROP_RATIO = (0.25, 1.0), (3 / 4, 4 / 3)
MIXUP_ALPHA = 0.2


def parse_augment(text: str) -> tuple[str, ...]:
    """``"crop,flip"`` → ("crop", "flip"); "" or "none" → (); unknown names fail with the closest."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["none"]:
        return ()
    for name in names:
        AUGMENTATIONS.get(name)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"--augment names {', '.join(twice)} twice", hint="name each augmentation once")
    if "crop" in names and "shift" in names:
        raise ConfigError("--augment crop and shift both translate the images: give one",
                          hint="crop pads by 1/8 of the size (shift by 1 pixel)")
    return tuple(names)


@dataclass
class Augmenter:
    names: tuple[str, ...]
    fill: torch.Tensor            # per channel: the standardised value of a raw 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, tuple[torch.Tensor, float] | None]:
        """(augmented batch, (partner labels, weight of ``y``) when the batch was mixed)."""
        x = self.geometric(x, self.draw(len(x), tuple(x.shape[1:]), generator))
        return self.mix(x, y, generator)

    def draw(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The per-sample draws of the geometric augmentations for ``n`` images of ``shape`` (C, H, W),
        one row per image: drawn for a batch, or once for a whole data set (``--teacher-views``)."""
        draws, small = {}, min(shape[1:]) < RESIZED_CROP_FROM
        if "crop" in self.names and small:
            draws["crop_offsets"] = random_shifts(n, generator, pad_of(shape))
        elif "crop" in self.names:
            draws["crop_box"] = random_boxes(n, generator)
        if "shift" in self.names:
            draws["shift_offsets"] = random_shifts(n, generator)
        if "flip" in self.names:
            draws["flip"] = torch.rand(n, generator=generator) < 0.5
        return draws

    def geometric(self, x: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        if "crop_offsets" in draws:
            x = shift_images(x, draws["crop_offsets"], self.fill, pad_of(tuple(x.shape[1:])))
        if "crop_box" in draws:
            x = resized_crop(x, draws["crop_box"])
        if "shift_offsets" in draws:
            x = shift_images(x, draws["shift_offsets"], self.fill)
        if "flip" in draws:
            x = torch.where(draws["flip"].to(x.device)[:, None, None, None], x.flip(3), x)
        return x

    def mix(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, tuple[torch.Tensor, float] | None]:
        mixing = [name for name in MIXING if name in self.names]
        if not mixing or len(x) < 2:
            return x, None
        # one of the two per batch when both are asked for (timm's switch, probability 1/2)
        chosen = mixing[int(torch.randint(len(mixing), (1,), generator=generator))]
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        return (mixup if chosen == "mixup" else cutmix)(x, y, rng)


def pad_of(shape: tuple[int, ...]) -> int:
    """Pad-and-crop's margin for images of ``shape`` (C, H, W): 1/8 of the side (4 px at 32, CIFAR's)."""
    return max(1, round(min(shape[1:]) / 8))


def random_shifts(n: int, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    return torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)


def shift_images(x: torch.Tensor, offsets: torch.Tensor, fill: torch.Tensor, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by its own (dy, dx) offset, filling with ``fill`` (per channel),
    with one gather for the whole batch: pad-and-random-crop."""
    n, c, h, w = x.shape
    padded = fill.view(1, -1, 1, 1).to(x).expand(n, c, h + 2 * max_shift, w + 2 * max_shift).clone()
    padded[:, :, max_shift:max_shift + h, max_shift:max_shift + w] = x
    offsets = offsets.to(x.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)   # (n, h)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)   # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` crop boxes (width, height, centre x, centre y in ``affine_grid``'s [-1, 1] frame) of
    25–100 % of the area and aspect 3/4–4/3, inside the image: the Inception crop's (Szegedy et al.
    2015, arXiv:1409.4842) draws."""
    area = torch.empty(n).uniform_(*CROP_AREA, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator)
    width = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)     # fractions of the image's width, height
    height = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)      # centres that keep the crop inside
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    return torch.stack([width, height, cx, cy], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box (``random_boxes``) resized back to the image's size, bilinear, as one
    ``grid_sample`` of the batch."""
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = boxes.unbind(1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def mixup(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
    """Each image mixed with its partner in the reversed batch, one weight λ ~ Beta(0.2, 0.2) per batch."""
    weight = float(rng.beta(MIXUP_ALPHA, MIXUP_ALPHA))
    return weight * x + (1.0 - weight) * x.flip(0), (y.flip(0), weight)


def cutmix(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
    """A box of the partner's image pasted in, of area 1 − λ (λ ~ Beta(1, 1)) at a uniform centre,
    clipped at the border; λ is then the share of the image left, as in the paper's code."""
    h, w = x.shape[2:]
    cut = math.sqrt(1.0 - rng.beta(1.0, 1.0))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, bottom = max(cy - int(h * cut) // 2, 0), min(cy + int(h * cut) // 2, h)
    left, right = max(cx - int(w * cut) // 2, 0), min(cx + int(w * cut) // 2, w)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
    return mixed, (y.flip(0), 1.0 - (bottom - top) * (right - left) / (h * w))


class AugmentedView:
    """One fixed augmented view of a data set, made batch by batch when sliced (the teacher's
    logits for ``--teacher-views`` are computed from it without an augmented copy of the data)."""

    def __init__(self, samples, augmenter: Augmenter, draws: dict[str, torch.Tensor]):
        self.samples, self.augmenter, self.draws = samples, augmenter, draws

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, rows) -> torch.Tensor:
        return self.augmenter.geometric(self.samples[rows], {k: v[rows] for k, v in self.draws.items()})
