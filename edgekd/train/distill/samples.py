"""A split's samples as the fit loop reads them: ``samples[index]`` is a float32 batch on the
training device, standardised with the run's statistics.

Integer pixels (uint8 and the other small integer types, possibly a memory-mapped cache) are kept
as they are, once, and standardised per batch: 100,000 96×96 RGB images are 2.8 GB as uint8 and
11 GB as float32. Float data (tables, float npz) is standardised whole, once, in float64 chunks
(``preprocess.standardize``), which also refuses values beyond float32's range; per batch it then
only slices.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from edgekd.core.preprocess import standardize

# raw integer data up to this size goes to the GPU once; larger data is copied batch by batch
ON_DEVICE_BYTES = 2 << 30


class Samples:
    """Raw samples + standardisation; indexable like the float32 tensor it stands for."""

    def __init__(self, x: np.ndarray, pre: dict, device: str):
        self.device = device
        self.rows: torch.Tensor | None = None        # a subset's row numbers in ``raw``
        if x.dtype.kind == "f":
            self.raw, self.mean, self.std = torch.from_numpy(standardize(pre, x)).to(device), None, None
            return
        with warnings.catch_warnings():      # a read-only memory map: torch only reads it
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            raw = torch.from_numpy(x)
        self.raw = raw.to(device) if device != "cpu" and raw.nbytes <= ON_DEVICE_BYTES else raw
        shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
        self.mean = torch.tensor(pre["mean"], dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(pre["std"], dtype=torch.float32, device=device).view(shape)

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.raw)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.raw.shape[1:]))

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, torch.Tensor) and index.device != self.raw.device:
            index = index.to(self.raw.device)
        if self.rows is not None:
            index = self.rows[index]
        batch = self.raw[index].to(self.device, non_blocking=True)
        if self.mean is None or self.std is None:
            return batch
        return (batch.float() - self.mean) / self.std

    def subset(self, index: np.ndarray) -> "Samples":
        """The samples at ``index`` (sorted, unique): a view holding the row numbers, never a copy of
        the rows (a transfer set of 100,000 images stays the memory-mapped cache it is)."""
        if len(index) == len(self) and np.array_equal(index, np.arange(len(self))):
            return self
        part = object.__new__(Samples)
        part.device, part.mean, part.std, part.raw = self.device, self.mean, self.std, self.raw
        rows = torch.as_tensor(index, device=self.raw.device)
        part.rows = self.rows[rows] if self.rows is not None else rows
        return part
