"""Classify every image in a folder with a bundle's model, on the board: edgekd's device install only
(numpy, the runtime, Pillow; no torch). Prints one line per image and a count per class.

    python classify_folder.py BUNDLE FOLDER [--top-k 3]
"""
import argparse
from collections import Counter
from pathlib import Path

from edgekd import Predictor
from edgekd.device.images import IMAGE_SUFFIXES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()

    predictor = Predictor(args.bundle)          # the student's int8 TFLite file, verified first
    print(predictor)
    images = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    counts = Counter()
    for start in range(0, len(images), 32):     # 32 images decoded at a time
        batch = images[start:start + 32]
        for path, best in zip(batch, predictor.predict(batch, top_k=args.top_k)):
            others = ", ".join(f"{n} {p:.0%}" for n, p in zip(best.labels[1:], best.probabilities[1:]))
            print(f"{path}: {best.label} ({best.probability:.0%}; then {others})")
            counts[best.label] += 1
    print(dict(counts.most_common()))


if __name__ == "__main__":
    main()
