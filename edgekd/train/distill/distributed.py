"""``edgekd distill`` under torchrun: one process per rank, DistributedDataParallel, rank 0 writes.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK (and the rendezvous address); without them
the run is one plain process and nothing here changes what it computes. Under torchrun
every rank runs the same experiment on the same data with the same seeds, except that:

- each batch of the single-process run (the global batch) is cut into one contiguous
  slice per rank; DDP averages the gradients and the loss is weighted so that the average
  is the gradient of the whole batch — the step one process would take, on N processes;
- teacher logits (the cache) and evaluations are computed on one block of rows per rank
  and gathered;
- rank 0 alone reads and writes the run folder and reports progress; the others follow
  it (``on_main``) and stay quiet.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Callable, Protocol, TypeVar

import torch
from torch import nn

from edgekd.core.errors import ConfigError, EdgeKDError

T = TypeVar("T")


class Rows(Protocol):
    """A tensor of samples, or what stands for one (``samples.Samples``, ``augment.AugmentedView``):
    its rows, sliced, are a tensor."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice) -> torch.Tensor: ...


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run; the default is a single process."""
    rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def block(self, n: int) -> tuple[int, int]:
        """This rank's contiguous block of ``n`` rows (blocks differ in size by at most one)."""
        return n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size

    def split_batch(self, n: int) -> tuple[slice, int, float]:
        """This rank's part of a global batch of ``n`` rows: (rows, how many are real, loss weight).

        The weight makes DDP's average of the ranks' gradients equal the gradient of the
        global batch's mean loss, also when the parts differ in size. A rank left without
        rows (a last batch smaller than the world) still has to take part in the step: it
        runs one row with weight 0."""
        if not self.distributed:
            return slice(0, n), n, 1.0
        low, high = self.block(n)
        if high == low:
            return slice(0, 1), 0, 0.0
        return slice(low, high), high - low, (high - low) * self.world_size / n

    def map_rows(self, fn: Callable[[Rows], torch.Tensor], x: Rows) -> torch.Tensor:
        """``fn(x)``, computed as one block of rows per rank and gathered on every rank."""
        if not self.distributed:
            return fn(x)
        import torch.distributed as dist

        low, high = self.block(len(x))
        mine = fn(x[low:high]) if high > low else fn(x[:1])[:0]
        sizes = [Ranks(r, self.world_size).block(len(x)) for r in range(self.world_size)]
        width = max(h - l for l, h in sizes)
        padded = torch.zeros((width, *mine.shape[1:]), dtype=mine.dtype, device=mine.device)
        padded[:len(mine)] = mine
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)      # all_gather needs equal shapes: pad, then trim
        return torch.cat([part[:h - l] for part, (l, h) in zip(parts, sizes)])

    def sum(self, values: list[float], device: str) -> list[float]:
        """Element-wise sum over ranks (the per-epoch loss and correct counts)."""
        if not self.distributed:
            return values
        import torch.distributed as dist

        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only (it reads the run folder); every rank gets its result,
        or raises its user error, so all ranks take the same path."""
        if not self.distributed:
            return fn()
        import torch.distributed as dist

        outcome: list = [None]
        if self.is_main:
            try:
                outcome[0] = ("ok", fn())
            except EdgeKDError as exc:
                outcome[0] = ("error", exc)
        dist.broadcast_object_list(outcome, src=0)
        kind, value = outcome[0]
        if kind == "error":
            value.printed_elsewhere = not self.is_main
            raise value
        return value

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train: DDP around ``model`` (which keeps the weights), or ``model``."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        on_gpu = next(model.parameters()).is_cuda
        return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if on_gpu else None)


SINGLE = Ranks()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_backend(backend: str, device: str) -> None:
    """nccl only moves CUDA tensors; say so before anything starts."""
    if backend == "nccl" and not device.startswith("cuda"):
        raise ConfigError("the nccl backend needs CUDA GPUs, and this run is on the CPU",
                          hint="use --backend gloo (or auto) on CPU, or --device cuda on GPU nodes")
    if backend == "nccl" and not torch.distributed.is_nccl_available():
        raise ConfigError("this PyTorch build has no nccl backend", hint="use --backend gloo")


def join(device: str, backend: str) -> tuple[Ranks, str]:
    """Join torchrun's process group when launched by it; returns this process's ranks and
    device (``cuda:LOCAL_RANK`` on GPU nodes). A plain process gets ``SINGLE`` and ``device``."""
    check_backend(backend, device)
    if not launched_by_torchrun():
        return SINGLE, device
    import torch.distributed as dist

    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if backend == "auto":
        backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
        atexit.register(dist.destroy_process_group)
    return Ranks(dist.get_rank(), dist.get_world_size(), backend), device
