"""Facts about the device the bench runs on. Torch-free, and nothing here imports a runtime.

Board: /proc/device-tree/model (Raspberry Pi and most ARM boards), /etc/nv_tegra_release
(Jetson). Temperatures from /sys/class/thermal, throttling from ``vcgencmd get_throttled``
(Raspberry Pi) — each where readable, else null.
"""
from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from edgekd.core.schema.bench import Device
from edgekd.device.bench.options import cores
from edgekd.device.runtimes import ROWS   # the rows only: importing a runtime's package happens in its opener

#: distributions whose versions device info reports: every runtime row's, then bench's own
RUNTIME_PACKAGES = [*(p for row in ROWS for p in row.packages), "numpy", "psutil"]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def board() -> str | None:
    model = _read("/proc/device-tree/model")
    if model:
        return model
    tegra = _read("/etc/nv_tegra_release")
    if tegra:
        return "NVIDIA Jetson (" + tegra.splitlines()[0].lstrip("# ").strip() + ")"
    vendor, product = _read("/sys/class/dmi/id/sys_vendor"), _read("/sys/class/dmi/id/product_name")
    if product:
        return " ".join(filter(None, [vendor, product]))
    return None


def cpu_model() -> str | None:
    info = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def os_name() -> str:
    release = _read("/etc/os-release") or ""
    for line in release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def package_versions() -> dict:
    out = {}
    for dist in RUNTIME_PACKAGES:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def thermal() -> dict[str, Any]:
    """Temperatures (°C) by zone, CPU frequency and throttling, where readable."""
    temps = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        raw = _read(str(zone / "temp"))
        if raw and raw.lstrip("-").isdigit():
            name = _read(str(zone / "type")) or zone.name
            temps[f"{zone.name}:{name}"] = int(raw) / 1000.0
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    out: dict[str, Any] = {"temperatures_c": temps or None,
           "cpu0_freq_mhz": int(freq) / 1000.0 if freq and freq.isdigit() else None,
           "throttled": None}
    if shutil.which("vcgencmd"):
        try:
            res = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
            value = res.stdout.strip().split("=")[-1]
            if value:
                bits = int(value, 16)
                out["throttled"] = {"raw": value, "throttled_now": bool(bits & 0x4),
                                    "under_voltage_now": bool(bits & 0x1),
                                    "freq_capped_now": bool(bits & 0x2),
                                    "throttled_since_boot": bool(bits & 0x40000)}
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    return out


def collect() -> Device:
    mem = None
    try:
        import psutil
        mem = int(psutil.virtual_memory().total)
    except ImportError:
        meminfo = _read("/proc/meminfo") or ""
        for line in meminfo.splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {"board": board(), "cpu": cpu_model(), "cores": cores(), "machine": platform.machine(),
            "memory_bytes": mem, "os": os_name(), "kernel": platform.release(),
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "cpu_governor": governor, "packages": package_versions()}


if __name__ == "__main__":  # pragma: no cover - a manual look
    import json
    print(json.dumps({**collect(), "thermal": thermal()}, indent=2))
    sys.exit(0)
