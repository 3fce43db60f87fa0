"""The engines compared, and how to tell whether each can run on this machine.

Each engine is a Tcl file under bench/tcl/ plus fixed parameters; the two
Aerostore variants differ only in ``aerostore.synchronous_commit``, the two
SQLite variants in where the database lives.  An engine that cannot load
(``package require`` fails) is reported as n/a with the error, never skipped
silently.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
TCL_DIR = os.path.join(BENCH, "tcl")


@dataclass(frozen=True)
class Engine:
    name: str
    kind: str            # "aerostore" or "sqlite": which Tcl file, which template
    params: tuple        # fixed (name, value) parameters for harness.tcl
    label: str

    @property
    def tcl_file(self):
        return os.path.join(TCL_DIR, self.kind + ".tcl")

    @property
    def is_aerostore(self):
        return self.kind == "aerostore"


ENGINES = [
    Engine("aerostore-sync-on", "aerostore", (("sync", "on"),),
           "Aerostore, synchronous_commit on"),
    Engine("aerostore-sync-off", "aerostore", (("sync", "off"),),
           "Aerostore, synchronous_commit off"),
    Engine("sqlite-mem", "sqlite", (("mode", "mem"),), "SQLite via Tcl, :memory:"),
    Engine("sqlite-wal", "sqlite", (("mode", "wal"),),
           "SQLite via Tcl, WAL, synchronous=FULL"),
]
BY_NAME = {e.name: e for e in ENGINES}


def tcl_env():
    """Environment for every tclsh: Aerostore's package folder on TCLLIBPATH."""
    env = dict(os.environ)
    tcl = os.path.join(REPO, "tcl")
    env["TCLLIBPATH"] = tcl + (" " + env["TCLLIBPATH"] if env.get("TCLLIBPATH") else "")
    return env


def tcl_eval(script: str, timeout: float = 120) -> tuple:
    """Run a short script in a fresh tclsh; -> (ok, stdout or error text)."""
    # tclsh reading stdin reports an error but still exits 0: catch it ourselves.
    script = ("if {[catch {\n" + script + "\n} msg]} { puts stderr $msg; exit 1 }\n")
    try:
        p = subprocess.run(["tclsh"], input=script, capture_output=True, text=True,
                           env=tcl_env(), timeout=timeout, cwd=BENCH)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if p.returncode != 0:
        return False, (p.stderr.strip() or p.stdout.strip()).splitlines()[0:3]
    return True, p.stdout.strip()


PROBES = {
    "aerostore": "puts [package require aerostore]",
    "sqlite": "puts [package require sqlite3]",
}


def availability(kinds) -> dict:
    """kind -> None if `package require` works, else the reason it does not."""
    out = {}
    for kind in kinds:
        ok, text = tcl_eval(PROBES[kind])
        out[kind] = None if ok else "package require failed: " + " / ".join(
            text if isinstance(text, list) else [text])
    return out
