"""Classify every image in a folder with a bundle's model, on the board: edgekd's device install only
(numpy, the runtime, Pillow; no torch). Prints one line per image and a count per class.

    python classify_folder.py BUNDLE FOLDER [--top-k 3]
"""
import argparse
from collections import Counter

from edgekd import Predictor
from edgekd.device.predict.files import Skipped, expand, predict_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("folder")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()

    predictor = Predictor(args.bundle)          # the student's int8 TFLite file, verified first
    print(predictor)
    counts, skipped = Counter(), Skipped()      # an unreadable image is counted, not fatal
    # the folder's images (sub-folders too; a link out of it refused), 64 decoded at a time
    for best in predict_paths(predictor, expand([args.folder]), args.top_k, skipped):
        others = ", ".join(f"{n} {p:.0%}" for n, p in zip(best.labels[1:], best.probabilities[1:]))
        print(f"{best.source}: {best.label} ({best.probability:.0%}; then {others})")
        counts[best.label] += 1
    print(dict(counts.most_common()), f"skipped: {len(skipped.items)}")


if __name__ == "__main__":
    main()
