"""The A/B gate's latency rule (``edgekd bench NEW --against OLD``). Torch-free.

The old and the new models are measured in the same run, child process after child process, the
order alternating (:func:`edgekd.device.bench.run.run_sides`), so repetition i of each side is a pair
measured back to back: whatever slows the machine down for a while slows both. The change is the
median over the pairs of new p50 / old p50, and its uncertainty a percentile bootstrap: the pairs
resampled with replacement, the median ratio recomputed :data:`RESAMPLES` times. (The ratio of the
two sides' medians would throw the pairing away: a drift between pairs moves each side's median.) A latency check fails only when the whole :data:`CONFIDENCE` interval lies
above the tolerance: the new model is then slower than allowed with that confidence.
"""
from __future__ import annotations

from statistics import median

import numpy as np

#: the two-sided confidence of the interval; its lower end must exceed the tolerance to fail
CONFIDENCE = 0.95
RESAMPLES = 10_000
#: fewer pairs give no interval worth the name (one pair: the point estimate alone)
MIN_PAIRS = 3
#: repetitions (pairs) with --against when --repeat is not given
PAIRS = 5


def paired_change(new: list[float], old: list[float], seed: int = 0) -> tuple[float, float, float]:
    """(estimate, low, high) of the change in percent: the median of new[i] / old[i] − 1, and the
    ends of its bootstrap interval. ``new[i]`` and ``old[i]`` were measured back to back."""
    if len(new) != len(old) or not new:
        raise ValueError(f"paired measurements must match one to one, got {len(new)} and {len(old)}")
    ratios = np.asarray(new, dtype=float) / np.asarray(old, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(ratios), size=(RESAMPLES, len(ratios)))
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(np.median(ratios[picks], axis=1), [tail, 1 - tail])
    return (median(ratios.tolist()) - 1) * 100, (float(low) - 1) * 100, (float(high) - 1) * 100
