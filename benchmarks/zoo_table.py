"""The README's zoo table, rendered: parameters and MACs of every zoo variant counted from the registry
(``edgekd.train.models``), p50 latency at 32 and 224 px read from benchmarks/int8_speed.py's record.

    python benchmarks/zoo_table.py          # rewrite the README's zoo-table section (no timing: int8_speed.py times)

Counts at 3×32×32 with 10 classes and 3×224×224 with 1000 classes, as int8_speed.py builds its models;
EfficientNet-Lite1/2 also at their own resolutions (240, 260), where their papers' figures are. The
p50 cell is the fastest of the record's five files of that variant and size (fp32 and int8 ONNX, fp32
and int8 TFLite, at 1 thread) and which one it is, or "not measured" where the record has no such row.
"""
from __future__ import annotations

import argparse
import functools
import json

from int8_speed import FILES, RECORD, variants

SECTION = "zoo-table"    # the README markers
#: (image size, classes) of each pair of columns, as int8_speed.py builds its models
SIZES = ((32, 10), (224, 1000))
#: the order of the families in the table; within one, variants by MACs at 32 px
FAMILIES = ("resnet", "mobilenetv2", "mobilenetv3", "efficientnet_lite")
#: the papers' parameters / MACs at 1000 classes, and the resolution of the figures where it is not 224 px
PAPER = {"resnet20": ("0.27M (CIFAR)", None), "resnet18": ("11.7M / 1.8G", None), "resnet34": ("21.8M / 3.6G", None),
         "resnet50": ("25.6M / 4.1G", None), "mobilenetv2_100": ("3.5M / 300M", None),
         "mobilenetv3_small_100": ("2.5M / 56M", None), "mobilenetv3_large_100": ("5.4M / 219M", None),
         "efficientnet_lite0": ("4.7M / 407M", None), "efficientnet_lite1": ("5.4M / 631M at 240", 240),
         "efficientnet_lite2": ("6.1M / 899M at 260", 260)}


@functools.lru_cache(maxsize=None)     # the table asks for each count twice: to order the rows, and in them
def counts(name: str, size: int, classes: int) -> tuple[int, int]:
    """Parameters and MACs of ``name`` on 3×size×size images, counted as ``edgekd models`` counts them."""
    from edgekd.train.models.listing import counts as zoo_counts

    return zoo_counts(name, (3, size, size), classes)


def parameters_text(count: int) -> str:
    return f"{count:,}" if count < 1e6 else f"{count / 1e6:.2f}M"


def macs_text(count: int) -> str:
    """Three significant figures or more: 1.81G, 555.4M, 12.5M, 0.83M (a small student's)."""
    if count >= 1e9:
        return f"{count / 1e9:.2f}G"
    return f"{count / 1e6:.1f}M" if count >= 1e7 else f"{count / 1e6:.2f}M"


def p50_text(row: dict | None) -> str:
    """The fastest file's p50 and its kind (int8_speed.py's FILES columns)."""
    if row is None:
        return "not measured"
    kind = min((c for c in FILES if c in row["p50_ms"]), key=lambda c: row["p50_ms"][c])
    return f"{row['p50_ms'][kind]:.2f} ms {kind}"


def ordered(names: list[str]) -> list[str]:
    """By family (FAMILIES), then by MACs at 32 px: the cheapest student of each family first."""
    def key(name: str) -> tuple[int, int]:
        family = next(i for i, f in enumerate(FAMILIES) if name.startswith(f))
        return family, counts(name, *SIZES[0])[1]
    return sorted(names, key=key)


def table_row(name: str, rows: dict) -> str:
    cells = [f"`{name}`"]
    for size, classes in SIZES:
        parameters, macs = counts(name, size, classes)
        paper, resolution = PAPER.get(name, ("", None))
        at_own = f" ({macs_text(counts(name, resolution, classes)[1])} at {resolution})" \
            if size == 224 and resolution else ""
        cells += [parameters_text(parameters), macs_text(macs) + at_own, p50_text(rows.get(f"{name}@{size}"))]
    int8 = [row for key, row in rows.items() if key.split("@")[0] == name and "tflite-int8" in row["p50_ms"]]
    cells += [PAPER.get(name, ("", None))[0], "yes" if int8 else "not measured"]
    return "| " + " | ".join(cells) + " |"


def render(record: dict) -> str:
    """The table of every registered variant and the line that says where the p50 figures come from."""
    m = record["machine"]
    lines = ["| variant | params @32 | MACs @32 | p50 @32 | params @224 | MACs @224 | p50 @224 | paper | full int8 |",
             "|---|---:|---:|---|---:|---:|---|---|---|"]
    lines += [table_row(name, record["rows"]) for name in ordered(variants())]
    lines += ["", f"p50: the fastest of the fp32 and int8 ONNX and TFLite files (`benchmarks/int8_speed.py`; its "
              f"[table on the int8 page](int8.md#int8-for-real-models) gives every file), {record['threads']} thread, batch 1, random weights, on {m['cores']} cores "
              f"({m['cpu']}). Full int8: the record holds the variant's int8 TFLite file, which the exporter makes "
              "only when input, output, weights and every feature map are int8."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="the same: this script only renders (int8_speed.py times)")
    parser.parse_args(argv)
    from readme_section import rewrite_readme

    rendered = render(json.loads(RECORD.read_text()))
    rewrite_readme(SECTION, rendered)
    print(rendered)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
