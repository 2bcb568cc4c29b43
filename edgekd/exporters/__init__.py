"""Exporters: a run folder → a bundle of ONNX and TFLite files, each checked against PyTorch.

``export_run`` (:mod:`edgekd.exporters.run`) is the API behind ``edgekd export``; the formats
come from one table (:mod:`edgekd.exporters.formats`).
"""
from __future__ import annotations

from edgekd.core.schema.export import EXPORT_REPORT
from edgekd.exporters.formats import FORMATS, Format, get_format, parse_formats
from edgekd.exporters.run import ExportContext, ExportOptions, default_plan, export_run

__all__ = ["export_run", "ExportOptions", "ExportContext", "FORMATS", "Format", "get_format", "parse_formats",
           "default_plan", "EXPORT_REPORT"]
