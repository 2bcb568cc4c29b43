"""``edgekd export`` on the terminal: a line per file as it is built, then the build report."""
from __future__ import annotations

from .numbers import size


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


def render_export_report(report: dict, console) -> None:
    """The build report: one row per file, sizes beside the teacher's and the weight bytes."""
    from rich.table import Table

    from rich import box

    table = Table(title=f"edgekd export → {report['bundle']}", title_justify="left", box=box.SIMPLE_HEAD)
    for column, justify in (("file", "left"), ("format", "left"), ("size", "right"), ("weights", "right"),
                            ("teacher", "right"), ("time", "right"), ("parity vs PyTorch", "left"),
                            ("accuracy", "right")):
        table.add_column(column, justify=justify, no_wrap=True)
    for row in report["models"]:
        parity, vs = row["parity"], row.get("vs_teacher")
        delta = parity["accuracy_delta"] * 100
        teacher = "-"
        if vs:
            teacher = f"{size(vs['bytes'])} ×{vs['size_ratio']:.2f}" if vs.get("size_ratio") else \
                size(vs["bytes"])
        table.add_row(row["file"], row["format"], size(row["bytes"]), size(row["weight_bytes"]),
                      teacher, f"{row['seconds']:.1f}s", _parity_cell(row),
                      f"{parity['accuracy']:.1%} {delta:+.1f}pt")
    console.print(table)
    calibration = report.get("calibration")
    notes = [f"eval: {report['eval']['samples']} held-out samples; accuracy delta is against PyTorch on them"]
    if calibration:
        notes.append(f"calibration: {calibration['samples']} training samples, stratified by class")
    notes.append("weights = parameters × bytes per weight; teacher = the teacher's file of the same format "
                 "(else its first) and this file's size relative to it")
    for note in notes:
        console.print(f"[dim]{note}[/dim]")
    console.print(f"bundle: {report['bundle']}  ({report['seconds']:.1f}s)   next: edgekd bench {report['bundle']}")


