"""The help of export, bench and sweep: every list of names from its table, every default from its
declaration, filled when the help is shown (a row added to a table is in the help, touching no CLI file)."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
from click.testing import CliRunner

from edgekd.app.cli.bench import bench_command
from edgekd.app.cli.export import export_command
from edgekd.app.cli.sweep import sweep_command
from edgekd.core.registry import Registry
from edgekd.device import runtimes
from edgekd.device.bench import options as bench_options
from edgekd.device.runtimes import ROWS
from edgekd.device.runtimes.onnx import PROVIDERS
from edgekd.exporters import formats, keep_auto
from edgekd.exporters.formats import FORMATS
from edgekd.exporters.run import DEFAULT_ROLES, ExportOptions


def shown(command) -> str:
    result = CliRunner().invoke(command, ["--help"], terminal_width=1000, max_content_width=1000)
    assert result.exit_code == 0, result.output
    return result.output


def option_help(command, flag: str) -> str:
    """The help line of ``flag`` (one line: the terminal is wide)."""
    return next(line for line in shown(command).splitlines() if line.lstrip().startswith(flag + " "))


def names(text: str, name: str) -> bool:
    """``name`` is in ``text`` as a whole name (tflite is not found inside tflite-int8)."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


@pytest.mark.parametrize("name", FORMATS.names())
def test_export_help_names_every_format(name):
    assert names(option_help(export_command, "--formats"), name)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name)
def test_bench_help_names_every_runtime(row):
    assert names(option_help(bench_command, "--runtime"), row.name)


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_bench_help_names_every_execution_provider(provider):
    assert names(option_help(bench_command, "--providers"), provider)


def test_a_row_added_to_a_table_is_in_the_help(monkeypatch):
    more = Registry("export format")
    for name in FORMATS:
        more.register(name)(FORMATS.get(name))
    more.register("onnx-fp16")(replace(FORMATS.get("onnx"), name="onnx-fp16"))
    monkeypatch.setattr(formats, "FORMATS", more)
    monkeypatch.setattr(runtimes, "ROWS", (*ROWS, replace(ROWS[0], name="openvino")))
    monkeypatch.setitem(PROVIDERS, "rocm", "ROCMExecutionProvider")
    assert names(option_help(export_command, "--formats"), "onnx-fp16")
    assert names(option_help(bench_command, "--runtime"), "openvino")
    assert names(option_help(bench_command, "--providers"), "rocm")


def test_export_help_shows_the_api_defaults(monkeypatch):
    assert option_help(export_command, "--calibration-samples").endswith(
        f"[default: {ExportOptions.calibration_samples}]")
    assert option_help(export_command, "--roles").endswith(f"[default: {','.join(DEFAULT_ROLES)}]")
    assert option_help(export_command, "--int8").endswith("[default: on]")
    monkeypatch.setattr(keep_auto, "DEFAULT_MAX_DROP", 0.25)     # where --keep-float auto's target is declared
    assert option_help(export_command, "--max-int8-drop").endswith("[default: 0.25]")


def test_bench_and_sweep_help_show_the_bench_defaults(monkeypatch):
    monkeypatch.setattr(bench_options, "cores", lambda: 6)
    monkeypatch.setitem(bench_options.DEFAULTS, "min_seconds", 3.5)
    assert option_help(bench_command, "--threads").endswith("[default: 1,6]")
    assert option_help(sweep_command, "--threads").endswith("[default: 1,6]")
    assert option_help(sweep_command, "--min-seconds").endswith("[default: 3.5]")


def test_options_not_given_leave_the_api_defaults():
    """Unset until given (None), as distill's: export passes only what was given, so ExportOptions' stand."""
    params = export_command.make_context("export", ["RUN"]).params
    assert all(params[name] is None for name in ("int8", "roles", "calibration_samples", "max_int8_drop"))
    assert sweep_command.make_context("sweep", ["--students", "cnn"]).params["min_seconds"] is None


def test_models_help_shows_list_models_defaults_and_leaves_them_to_it():
    """edgekd models' defaults are list_models' own: shown from its signature, passed only when given."""
    import inspect

    from edgekd.app.cli.models import models_command
    from edgekd.train.models.listing import list_models

    defaults = {name: p.default for name, p in inspect.signature(list_models).parameters.items()}
    size = ",".join(map(str, defaults["image_size"]))
    assert option_help(models_command, "--image-size").endswith(f"[default: {size}]")
    assert option_help(models_command, "--channels").endswith(f"[default: {defaults['channels']}]")
    assert option_help(models_command, "--classes").endswith(f"[default: {defaults['num_classes']}]")
    params = models_command.make_context("models", []).params
    assert all(params[name] is None for name in ("image_size", "channels", "classes"))
