"""The per-class results as text: the lost-classes line of each student file (terminal and markdown),
and the markdown's per-class table and confusion matrices. Torch-free, rich-free."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from edgekd.core.numbers import pct
from edgekd.device.bench.classes import class_drops

#: markdown shows every class up to this many (the table's rows, a confusion matrix's rows and
#: columns); beyond it the classes with the lowest accuracy in any file, and bench.json has the rest
MD_CLASSES = 30
#: the lost classes a line names before "and N more"
NAMED = 3


def lost_lines(result: Mapping[str, Any], shown: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per student file of ``shown`` (the table's comparisons) that was evaluated: the classes
    it lost against that teacher beyond sampling noise, else its largest drop, within noise."""
    by_file = {m["file"]: m for m in result["models"]}
    # one per pair: bench.json repeats a pair's lost classes at each threads/batch setting
    lost = {(c["model"], c["teacher"]): c["lost_classes"] for c in shown
            if "lost_classes" in c and c["model"] in by_file and c["teacher"] in by_file}
    return [_lost_line(model, teacher, classes, by_file[model], by_file[teacher])
            for (model, teacher), classes in lost.items()]


def _lost_line(model: str, teacher: str, lost: list[dict], m: Mapping[str, Any], t: Mapping[str, Any]) -> str:
    if lost:
        named = ", ".join(f"{c['label']} ({pct(c['teacher_accuracy'], '.1f')} → {pct(c['accuracy'], '.1f')})"
                          for c in lost[:NAMED])
        more = f" and {len(lost) - NAMED} more" if len(lost) > NAMED else ""
        return f"{model} lost against {teacher}: {named}{more}"
    drops = class_drops(m, t)
    if not drops:
        return f"{model} lost no class against {teacher}: no class scored lower"
    label, was, now = drops[0]
    return (f"{model} lost no class against {teacher} beyond sampling noise "
            f"(largest drop: {label}, {pct(was, '.1f')} → {pct(now, '.1f')})")


def classes_markdown(result: Mapping[str, Any], shown: Sequence[Mapping[str, Any]]) -> list[str]:
    """The per-class section: accuracy per class of every evaluated file side by side (and top-5),
    the lost-classes lines, then each file's confusion matrix."""
    models = [m for m in result["models"] if m.get("per_class")]
    if not models:
        return []
    lines = ["", "### Per class", "", "Accuracy on the eval set per class, each evaluated file a column; a student "
             "file *lost* a class when it gets it right less often than the teacher beyond sampling noise "
             "(exact McNemar test on the samples only one of the two gets right, Holm-adjusted over the classes, "
             "5 %).", ""]
    lines += _per_class_table(models) + [""] + [f"- {line}" for line in lost_lines(result, shown)]
    for m in models:
        lines += _confusion_markdown(m)
    return lines


def _per_class_table(models: list[Mapping[str, Any]]) -> list[str]:
    classes = max(len(m["per_class"]) for m in models)
    rows = list(range(classes))
    note = []
    if classes > MD_CLASSES:
        # the classes some file does worst on first: where a small model loses, and the rest in bench.json
        rows = sorted(rows, key=lambda i: _lowest(models, i))[:MD_CLASSES]
        note = ["", f"The {MD_CLASSES} of {classes} classes with the lowest accuracy in any file; "
                "bench.json's `models[].per_class` has them all."]
    first = next(m for m in models if len(m["per_class"]) == classes)
    lines = ["| class | samples | " + " | ".join(_cell(m["file"]) for m in models) + " |",
             "|---|---:|" + "---:|" * len(models)]
    for i in rows:
        cells = [pct(m["per_class"][i]["accuracy"]) if i < len(m["per_class"]) else "—" for m in models]
        lines.append(f"| {_cell(first['per_class'][i]['label'])} | {first['per_class'][i]['samples']} | "
                     + " | ".join(cells) + " |")
    lines.append(f"| **all (top-1)** | {sum(c['samples'] for c in first['per_class'])} | "
                 + " | ".join(f"**{pct(m['accuracy'])}**" for m in models) + " |")
    if any(m.get("top5_accuracy") is not None for m in models):
        lines.append("| **all (top-5)** | | " + " | ".join(f"**{pct(m.get('top5_accuracy'))}**" for m in models) + " |")
    return lines + note


def _lowest(models: list[Mapping[str, Any]], i: int) -> float:
    """Class ``i``'s lowest accuracy in any file (1 where no file has a sample of it)."""
    scores = [m["per_class"][i]["accuracy"] for m in models if i < len(m["per_class"])]
    return min((s for s in scores if s is not None), default=1.0)


def _confusion_markdown(m: Mapping[str, Any]) -> list[str]:
    matrix = m.get("confusion")
    head = ["", f"#### Confusion matrix: `{m['file']}`", ""]
    if not matrix:
        return head + [f"{len(m['per_class'])} classes: too many for a confusion matrix in bench.json."]
    if len(matrix) > MD_CLASSES:
        return head + [f"{len(matrix)} classes: the matrix is in bench.json (`models[].confusion`)."]
    labels = [_cell(c["label"]) for c in m["per_class"]]
    lines = head + ["Rows: the true class; columns: the predicted class; counts of eval samples.", "",
                    "| true \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for i, row in enumerate(matrix):
        cells = [f"**{v}**" if i == j else (str(v) if v else "·") for j, v in enumerate(row)]
        lines.append(f"| {labels[i]} | " + " | ".join(cells) + " |")
    return lines


def _cell(text: str) -> str:
    """A label or file name in a markdown table cell: a bar would end the cell."""
    return str(text).replace("|", "\\|")
