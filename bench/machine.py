"""What the run was measured on, so that figures from different machines are never compared blindly.

It also tells how much else the machine did during the run: on a 2-core
machine another process's work shows up directly in the timings.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata

from bench import ROOT

LIBRARIES = ("pyarrow", "polars", "duckdb", "pandas", "numpy", "azure-storage-blob")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        import psutil
    except ImportError:
        return "unknown"
    return f"{psutil.virtual_memory().total / 1024**3:.1f} GiB"


def _command(*argv: str) -> str:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=True, cwd=ROOT,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _azurite() -> str:
    try:
        return str(json.loads((ROOT / "node_modules" / "azurite" / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def facts() -> list[tuple[str, str]]:
    """Name and value of each fact worth recording next to the figures."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dirty = " (uncommitted changes)" if _command("git", "status", "--porcelain") not in ("", "unknown") else ""
    return [
        ("CPU", f"{_cpu_model()}, {cores} usable cores"),
        ("memory", _memory()),
        ("OS", platform.platform()),
        ("Python", sys.version.split()[0]),
        ("libraries", ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)),
        ("Azurite", f"{_azurite()} on Node.js {_command('node', '--version')}"),
        ("commit", _command("git", "rev-parse", "--short", "HEAD") + dirty),
    ]


@dataclass(frozen=True)
class CpuTimes:
    """System-wide busy and steal CPU seconds, and this process's own (children included)."""

    busy: float
    steal: float
    own: float

    @classmethod
    def now(cls) -> CpuTimes:
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        try:
            with open("/proc/stat", encoding="utf-8") as stat:
                fields = [int(v) / tick for v in stat.readline().split()[1:9]]
        except (OSError, ValueError):
            fields = [math.nan] * 8
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        times = os.times()
        return cls(user + nice + system + irq + softirq, steal,
                   times.user + times.system + times.children_user + times.children_system)


def interference(start: CpuTimes, end: CpuTimes) -> str:
    """How much CPU went to anything but the benchmark and its children, which would skew its timings."""
    other = (end.busy - start.busy) - (end.own - start.own)
    steal = end.steal - start.steal
    return (f"the benchmark and its children used {end.own - start.own:.0f} CPU s; everything else "
            f"(other processes, the kernel's writeback) {max(other, 0.0):.0f} CPU s; "
            f"the hypervisor stole {steal:.0f} s")
