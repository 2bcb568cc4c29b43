"""python logits.py BUNDLE OUT.npz [SUFFIX]: every model of BUNDLE (or those whose file ends in SUFFIX)
on its eval set, through edgekd's runtimes, one sample at a time on one thread, saved as
{model file: float32 logits}. Run in two environments to compare them."""
import json
import sys
from pathlib import Path

import numpy as np

from edgekd.device.runtimes import open_model

bundle, out, suffix = Path(sys.argv[1]), sys.argv[2], (sys.argv[3:] or [""])[0]
with np.load(bundle / "eval.npz") as data:
    x = data["x"].astype(np.float32)
models = [m["file"] for m in json.loads((bundle / "manifest.json").read_text())["models"] if m["file"].endswith(suffix)]


def logits(model: Path) -> np.ndarray:
    runtime = open_model(model, threads=1)
    return np.concatenate([runtime.run(sample[None]) for sample in x])   # batch 1: int8 models fix it


np.savez(out, **{name: logits(bundle / name) for name in models})
