"""``edgekd predict``'s output: a line per image in the terminal, or JSON or CSV for a pipe."""
from __future__ import annotations

import csv
import json
import sys
from typing import Iterable

import click

from edgekd.device.predict import Prediction, Predictor
from edgekd.device.predict.files import Skipped

#: the JSON document's shape: {"schema": "edgekd.predict", "schema_version": 1, "bundle", "file",
#: "format", "top_k", "predictions": [Prediction.as_dict() …], "skipped": [{"source", "error"} …]}
SCHEMA, SCHEMA_VERSION = "edgekd.predict", 1


def render(predictor: Predictor, predictions: Iterable[Prediction], output: str, top_k: int,
           skipped: Skipped | None) -> None:
    """Stream ``predictions`` in ``output`` (text | json | csv); the skipped inputs counted at the end."""
    if output == "json":
        _json(predictor, list(predictions), top_k, skipped)
    elif output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["source"] + [f"{c}_{r}" for r in range(1, top_k + 1) for c in ("label", "probability")])
        for p in predictions:
            writer.writerow([p.source] + [v for n, q in zip(p.labels, p.probabilities) for v in (n, f"{q:.6f}")])
    else:
        for p in predictions:
            click.echo(f"{p.source}  " + "  ".join(f"{n} {q:.1%}" for n, q in zip(p.labels, p.probabilities)))
    if skipped is not None and skipped.items:
        first, why = skipped.items[0]
        click.echo(f"skipped {len(skipped.items)} unreadable image{'s' if len(skipped.items) > 1 else ''} "
                   f"(the first: {first}: {why})", err=True)


def _json(predictor: Predictor, predictions: list[Prediction], top_k: int, skipped: Skipped | None) -> None:
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "bundle": str(predictor.bundle.root),
           "file": predictor.entry["file"], "format": predictor.entry["format"], "top_k": top_k,
           "predictions": [p.as_dict() for p in predictions],
           "skipped": [{"source": s, "error": e} for s, e in (skipped.items if skipped else [])]}
    click.echo(json.dumps(doc, indent=1))
