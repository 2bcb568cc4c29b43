"""The documents the stages hand each other, one module per document. Torch-free.

Each document is written and read through its module here, so the writer and every reader agree
on one shape: ``jsonfile`` reads strict JSON (the same rules for every document edgekd loads), and
``fields`` checks the fields a reader relies on before anything is measured or written.
"""
from __future__ import annotations

#: the schema version every edgekd document carries today; a reader refuses a newer one
SCHEMA_VERSION = 1

#: the three models a distill run trains, in the order they are trained and shown
TRAINED_ROLES = ("teacher", "student", "simple")

#: the roles a bench result may hold: a bundle's models, or one file benched alone ("model")
BENCH_ROLES = ("student", "teacher", "simple", "model")
