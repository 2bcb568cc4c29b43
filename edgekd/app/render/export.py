"""``edgekd export`` on the terminal: a line per file as it is built, then the build report."""
from __future__ import annotations

from rich import box
from rich.table import Table

from edgekd.app.render.width import fitting
from edgekd.core.numbers import size
from edgekd.device.bench.text import int8_larger_line, int8_references


def export_progress(console):
    """The export's progress callback: one dim line as each file starts."""
    def progress(event: dict) -> None:
        if event["event"] == "start":
            console.print(f"[dim]exporting {event['role']} → {event['format']} ({event['file']})…[/dim]")
    return progress


def _parity_cell(row: dict) -> str:
    parity = row["parity"]
    if parity.get("tolerance") is not None:
        return f"[green]Δ {parity['max_abs_diff']:.1e} ✓[/green]"
    if row["precision"] == "int8":
        return f"top-1 {parity['top1_agreement']:.1%}"
    return f"Δ {parity['max_abs_diff']:.1e}"


WORST_LAYERS = 3     # the terminal's share of each int8 file's per-layer report (--explain: all)

#: the table's columns, widest first: a narrower console leaves out the weights and time (in export.json),
#: then the format (in the file's name), never cutting a file name short
COLUMN_SETS = (("file", "format", "size", "weights", "teacher", "time", "parity vs PyTorch", "accuracy"),
               ("file", "format", "size", "teacher", "parity vs PyTorch", "accuracy"),
               ("file", "size", "teacher", "parity", "accuracy"))
LEFT = ("file", "format", "parity vs PyTorch", "parity")


def _cells(row: dict) -> dict[str, str]:
    """One file's cells, by column (both parity headers)."""
    parity, vs = row["parity"], row.get("vs_teacher")
    teacher = "-"
    if vs:
        teacher = f"{size(vs['bytes'])} ×{vs['size_ratio']:.2f}" if vs.get("size_ratio") else size(vs["bytes"])
    return {"file": row["file"], "format": row["format"], "size": size(row["bytes"]),
            "weights": size(row["weight_bytes"]), "teacher": teacher, "time": f"{row['seconds']:.1f}s",
            "parity vs PyTorch": _parity_cell(row), "parity": _parity_cell(row),
            "accuracy": f"{parity['accuracy']:.1%} {parity['accuracy_delta'] * 100:+.1f}pt"}


def _table(report: dict, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Table:
    table = Table(title=f"edgekd export → {report['bundle']}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column, justify="left" if column in LEFT else "right", no_wrap=True)
    for cells in rows:
        table.add_row(*(cells[column] for column in columns))
    return table


def print_export_summary(report: dict, console, explain: bool = False) -> None:
    """The build report: one row per file, sizes beside the teacher's and the weight bytes; then, per
    int8 file, its layers with the lowest signal-to-quantization-noise ratio (all with ``explain``)."""
    rows = [_cells(row) for row in report["models"]]
    console.print(fitting(console, lambda columns: _table(report, rows, columns), COLUMN_SETS))
    for q, f in int8_references(report["models"]):
        larger = int8_larger_line(q, f)
        if larger:
            console.print(larger, highlight=False, markup=False)
    for row in report["models"]:
        render_kept_float(row, console)
    for row in report["models"]:
        if row.get("layer_error"):
            render_layer_error(row, console, None if explain else WORST_LAYERS)
    calibration = report.get("calibration")
    notes = [f"eval: {report['eval']['samples']} held-out samples; accuracy delta is against PyTorch on them"]
    if calibration:
        how = "stratified by class" if calibration.get("stratified") else "a random sample (the file has no labels)"
        notes.append(f"calibration: {calibration['samples']} training samples, {how}")
    notes.append("weights = parameters × bytes per weight; teacher = the teacher's file of the same format "
                 "(else its first) and this file's size relative to it")
    for note in notes:
        console.print(f"[dim]{note}[/dim]")
    console.print(f"bundle: {report['bundle']}  ({report['seconds']:.1f}s)   next: edgekd bench {report['bundle']}")


def render_layer_error(row: dict, console, count: int | None) -> None:
    """One int8 file's layers, worst SNR first: ``count`` of them, or all (None)."""
    layers = sorted(row["layer_error"]["layers"], key=lambda layer: layer["snr_db"])
    shown = layers if count is None else layers[:count]
    what = "every layer" if len(shown) == len(layers) else f"the {len(shown)} worst of {len(layers)} layers"
    console.print(f"{row['file']}: {what}, int8 output vs fp32 on {row['layer_error']['samples']} calibration "
                  "samples (SNR dB, higher is better)")
    for layer in shown:
        cosine = "" if layer.get("cosine") is None else f"  cos {layer['cosine']:.4f}"
        console.print(f"  {layer['snr_db']:6.1f} dB  {layer['layer']} [dim]({layer['op']}){cosine}[/dim]",
                      markup=True, highlight=False)
    if count is not None and len(layers) > count:
        console.print("[dim]  all layers: edgekd export --explain, or layer_error in export.json[/dim]")



def render_kept_float(row: dict, console) -> None:
    """One line for a file with layers kept float, and for --keep-float auto's choice (full-integer, the
    layers kept float, or the target missed)."""
    auto = row["details"].get("keep_float_auto")
    if not auto:
        if row["details"].get("kept_float"):
            console.print(f"{row['file']}: mixed int8/float (kept float: {', '.join(row['details']['kept_float'])})",
                          highlight=False)
        return
    drop, target = f"drop {auto['drop_points']:.2f} pt", f"{auto['target_drop_points']:g}"
    kept = ", ".join(auto["kept_float"])
    if auto["met"]:
        text = f"{'kept float ' + kept if kept else 'full-integer'}: {drop} ≤ {target}"
    else:
        text = (f"[red]missed --max-int8-drop {target}[/red] after {len(auto['steps']) - 1} layer(s) kept float: "
                f"written the smallest, {drop}{', kept float ' + kept if kept else ', full-integer'}")
    console.print(f"{row['file']}: --keep-float auto: {text} ({auto['samples']} labelled training samples)",
                  highlight=False)
