"""What the figures were measured on: CPU, cores, load, and every version involved."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess

from engines import REPO, tcl_eval


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _mem_total() -> str:
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        return f"{kb / 1048576:.1f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def describe() -> dict:
    ok, tcl = tcl_eval("puts [info patchlevel]")
    ok2, sqlite = tcl_eval("package require sqlite3; puts [sqlite3 -version]")
    ok3, thread = tcl_eval("puts [package require Thread]")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": _mem_total(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tcl": tcl if ok else "unavailable",
        "sqlite": sqlite if ok2 else "unavailable",
        "tcl_thread": thread if ok3 else "unavailable",
        "git_commit": _git_commit(),
        "loadavg_start": loadavg(),
    }
