"""What the gate writes: its lines, JUnit XML, the markdown of GitHub's step summary, and the next
baseline."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, Mapping

from edgekd.core.bundle import refuse_overwriting_inputs
from edgekd.core.errors import ConfigError
from edgekd.core.fsutil import atomic_write_bytes, atomic_write_text
from edgekd.core.schema.bench import BenchDoc, to_json
from edgekd.device.bench.text import device_line

if TYPE_CHECKING:
    from edgekd.device.bench.gate.checks import GateReport


def lines(report: GateReport, result: Mapping[str, Any]) -> list[str]:
    reps = result["settings"].get("repeat", 1)
    out = [c.line() for c in report.checks]
    out += [f"note: {n}" for n in report.notes]
    out.append(f"{report.summary()} (latency: median of {reps} repetition{'s' if reps > 1 else ''} per setting)")
    return out


def to_junit(report: GateReport, result: Mapping[str, Any]) -> bytes:
    """One <testcase> per check; a failed check carries a <failure> with its verdict."""
    suite = ET.Element("testsuite", name="edgekd gate", tests=str(len(report.checks)),
                       failures=str(len(report.failed)), errors="0", skipped="0",
                       timestamp=result.get("created_utc", ""))
    props = ET.SubElement(suite, "properties")
    for name, value in (("target", result["target"]["path"]), ("device", device_line(result)),
                        ("repetitions", str(result["settings"].get("repeat", 1)))):
        ET.SubElement(props, "property", name=name, value=value)
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", classname=f"edgekd.gate.{c.model}", name=c.name, time="0")
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=c.verdict(), type="budget")
            failure.text = c.line()
        ET.SubElement(case, "system-out").text = c.line()
    if report.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(report.notes)
    root = ET.Element("testsuites", name="edgekd", tests=suite.get("tests", "0"), failures=suite.get("failures", "0"))
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def step_summary_markdown(report: GateReport, result: Mapping[str, Any]) -> str:
    """The gate for GitHub's step summary: the verdict, then one table row per check."""
    head = f"### edgekd gate: {'✅ passed' if report.passed else '❌ failed'} · `{result['target']['path']}`"
    out = [head, "", report.summary() + f" · {device_line(result)}", "",
           "| | model | check | setting | measured vs limit | detail |", "|---|---|---|---|---|---|"]
    for c in report.checks:
        cells = ["✅" if c.passed else "❌", f"`{c.model}`", f"`{c.key}`", c.setting, c.verdict(), c.detail]
        out.append("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
    out += [""] + [f"- {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def output_paths(junit=None, step_summary=None, save_baseline=None) -> dict:
    return {"--junit": junit, "--save-baseline": save_baseline, "the step summary (GITHUB_STEP_SUMMARY)": step_summary}


def write_gate_outputs(report: GateReport, result: BenchDoc, junit=None, step_summary=None, save_baseline=None) -> None:
    """JUnit XML and the next baseline atomically; the GitHub step summary is appended to. None of
    them may land in a bundle the bench read, the measured one or the --against one
    (``bench_and_check`` refuses that before measuring)."""
    target = result["target"]
    bundles = [target["path"]] + ([result["against"]["path"]] if result.get("against") else [])
    refuse_overwriting_inputs(bundles, output_paths(junit, step_summary, save_baseline),
                              (target.get("eval") or {}).get("file"))
    try:
        if junit:
            atomic_write_bytes(junit, to_junit(report, result))
        if save_baseline:
            atomic_write_text(save_baseline, to_json(result))
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as f:
                f.write(step_summary_markdown(report, result))
    except OSError as exc:
        raise ConfigError(f"cannot write the gate report: {exc.strerror}: '{exc.filename}'") from None


