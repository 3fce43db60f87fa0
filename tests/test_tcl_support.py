"""Shared helpers of the Tcl extension tests (imported by tests/test_tcl_*.py);
the fixtures that use them (``shim``, ``bare_tcl``, ``tcl``, ``module_tcl``)
are in conftest.py.

``Interp`` is a ``tkinter.Tcl()`` with the package loaded and helpers that keep
errorCode; ``tclsh`` runs a script in a real tclsh subprocess from a clean
environment; ``ROWS``/``tsv_of`` are a small FlightState data set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tkinter

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TCL_DIR = os.path.join(ROOT, "tcl")
LIB = os.path.join(ROOT, "aerostore", "tclbridge", "libaerostore_tcl.so")


class TclError(Exception):
    """A Tcl error with its errorCode (and errorInfo)."""

    def __init__(self, message, code, info=""):
        super().__init__(message)
        self.message = message
        self.code = code
        self.info = info


# Every Interp stays referenced until the process ends: a Tcl interpreter must
# be deleted by the thread that made it, and a tkinter app caught in a
# reference cycle (a failed test's traceback) could otherwise be collected by
# whatever thread runs the garbage collector next (an engine thread), which
# makes Tcl abort.
_KEEP = []


class Interp:
    """A tkinter.Tcl() interpreter with helpers that keep errorCode."""

    def __init__(self):
        _KEEP.append(self)
        self.tk = tkinter.Tcl()
        self.tk.eval(f"lappend auto_path {{{TCL_DIR}}}")
        self.tk.eval("package require aerostore")

    def eval(self, script: str):
        return self.tk.eval(script)

    def call(self, *words):
        """Run a command given as words; a Tcl error raises TclError with errorCode."""
        self.tk.call("set", "::_cmd", words)
        code = self.tk.eval("catch {{*}$::_cmd} ::_res ::_opts")
        if code == "1":
            raise TclError(self.tk.eval("set ::_res"),
                           self.tk.eval("dict get $::_opts -errorcode"),
                           self.tk.eval("dict get $::_opts -errorinfo"))
        self.tk.eval("set ::_s [format %s $::_res]")
        return self.tk.call("set", "::_s")     # a pure string: NULs and all

    def list(self, *words) -> list:
        """The result of a command as a list of strings."""
        return [str(x) for x in self.tk.splitlist(self.call(*words))]

    def error(self, *words) -> TclError:
        with pytest.raises(TclError) as ei:
            self.call(*words)
        return ei.value


def reset_store(where=":memory:"):
    """Close the process's Tcl store (the one ``aerostore::init`` opens), if
    any.  Tests get this done around them by the fixtures in conftest.py."""
    from aerostore.tclbridge import state
    state.close()
    return where


def tclsh(script: str, *, cwd=None, env_extra=None, timeout=60, check=True):
    """Run ``script`` in tclsh with a minimal environment (and a PATH without
    the virtual environment); returns the CompletedProcess."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
           "TCLLIBPATH": TCL_DIR, "LANG": "C.UTF-8"}
    env.update(env_extra or {})
    p = subprocess.run(["tclsh"], input=script, capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=timeout, encoding="utf-8")
    if check and p.returncode != 0:
        raise AssertionError(f"tclsh failed ({p.returncode}):\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


ROWS = [
    ("UAL1", 40.5, -73.5, 35000, 450, 1700000000),
    ("DAL2", 33.6, -84.4, 12000, 300, 1700000100),
    ("AAL3", 32.9, -97.0, 500, 120, 1700000200),
    ("SWA4", 29.6, -95.3, 22000, 410, 1700000300),
    ("NUL5", None, None, None, None, None),
    ("JBU6", 42.4, -71.0, 30000, None, 1700000400),
    ("ASA7", 47.4, -122.3, -50, 0, 0),
]


def tsv_of(rows) -> str:
    return "".join("\t".join("" if v is None else repr(v) if isinstance(v, float) else str(v)
                             for v in r) + "\n" for r in rows)


def tclsh_can(script):
    """(True, "") if a tclsh with this repository's tcl/ on its path runs ``script``
    without error, else (False, why): for skipping tests that need a package."""
    if not shutil.which("tclsh"):
        return False, "tclsh not installed"
    env = dict(os.environ, TCLLIBPATH=TCL_DIR)
    p = subprocess.run(["tclsh"], input="if {[catch {%s} m]} {puts stderr $m; exit 1}" % script,
                       capture_output=True, text=True, env=env, timeout=120)
    return p.returncode == 0, p.stderr.strip()
