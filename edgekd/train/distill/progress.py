"""Training progress as plain text lines: what ``edgekd distill`` prints where its output is no terminal
(a CI log, a pipe, a file), one line per epoch in place of live bars, and a reporter a script can
hand to ``run_experiment``."""
from __future__ import annotations

from typing import IO, Any, Mapping

from edgekd.core.gap import gap_text, split_gap_closed
from edgekd.core.schema import TRAINED_ROLES


def epoch_line(split: str, role: str, epochs: int, record: Mapping[str, Any]) -> str:
    """``fold1 teacher epoch 3/10  loss 0.4123  val acc 91.20%  5,120 samples/s`` from an ``epoch`` event."""
    parts = [f"{split} {role} epoch {record['epoch']}/{epochs}", f"loss {record['loss']:.4f}"]
    if "val_accuracy" in record:
        parts.append(f"val acc {100 * record['val_accuracy']:.2f}%")
    parts.append(f"{record['samples_per_second']:,.0f} samples/s")
    return "  ".join(parts)


def split_line(result: Mapping[str, Any]) -> str:
    """A finished split's accuracies and gap closed, from a ``split_done`` event's cv.json record."""
    return (f"{result['split']:>6}: " + "  ".join(f"{r} {100 * result[r]['accuracy']:.2f}%" for r in TRAINED_ROLES)
            + f"  gap closed {gap_text(split_gap_closed(result))}")


class EpochLines:
    """A reporter (``run_experiment(cfg, reporter=EpochLines(sys.stderr))``) that writes a line per
    epoch, one per finished split and the run's notes to ``stream``, each flushed as it comes: a log
    read while the run goes on shows every epoch as it ends."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def __call__(self, event: str, **info) -> None:
        if event == "epoch":
            text = epoch_line(info["split"], info["role"], info["epochs"], info["record"])
        elif event == "split_done":
            text = split_line(info["result"])
        elif event == "note":
            text = f"note: {info['text']}"
        else:          # "log" lines go to train.log; "stage_start" has nothing to show yet
            return
        self.stream.write(text + "\n")
        self.stream.flush()
