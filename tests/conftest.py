"""Shared fixtures.  Keep this small: test files define what only they need.

Python: ``mem_db`` and ``flights`` (an in-memory database and its FlightState
table), ``open_db`` (``aerostore.open`` whose databases are closed after the
test).  Tcl (helpers in test_tcl_support.py): ``shim`` (the built C shim),
``bare_tcl`` (an interpreter with no store open), ``tcl`` (an interpreter on a
fresh in-memory store) and ``module_tcl`` (the same, shared by one module's
tests).  The process has one Tcl store (``aerostore::init``); every Tcl fixture
closes it before and after, so no test sees another's store.  ``within(fn)``
runs a call that might hang in a helper thread, with a timeout.
"""

import threading
import glob
import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_stale_extension() -> None:
    """Rebuild the engine's C extensions (setup.py) before aerostore is imported
    when one is missing or its sources are newer than a built module, as `make
    test` would: the shim, rebuilt by the ``shim`` fixture, reads the _keymap
    extension's capsule, and the two must come from the same sources."""
    built = [glob.glob(os.path.join(_ROOT, "aerostore", name + ".*.so")) for name in ("_keymap", "_heldops")]
    built = [b[0] for b in built if b] if all(built) else []
    sources = glob.glob(os.path.join(_ROOT, "aerostore", "_*.[ch]")) + [os.path.join(_ROOT, "setup.py")]
    if built and max(map(os.path.getmtime, sources)) <= min(map(os.path.getmtime, built)):
        return
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=_ROOT, check=True,
                   stdout=subprocess.DEVNULL)


_build_stale_extension()

import aerostore  # noqa: E402 - after the build above
from aerostore import FlightState  # noqa: E402


@pytest.fixture
def mem_db():
    """An in-memory database, closed after the test."""
    d = aerostore.open(":memory:")
    yield d
    d.close()


@pytest.fixture
def flights(mem_db):
    """The FlightState table (default indexes) of ``mem_db``, empty."""
    return mem_db.create_table(FlightState)


@pytest.fixture
def open_db():
    """``aerostore.open`` for the test: every database it opened is closed after
    the test, however it ends (closing twice is harmless, so a test may close
    one itself, e.g. to reopen its directory)."""
    opened = []

    def _open(*args, **kwargs):
        db = aerostore.open(*args, **kwargs)
        opened.append(db)
        return db

    yield _open
    for db in reversed(opened):
        db.close()


def vacuum_now(db) -> None:
    """Prune everything the horizon allows, now: wait for the maintainer (it
    vacuums for readers in the background), then vacuum in this thread."""
    assert db._maint.idle(10), "the maintainer did not go idle"
    db._vacuum(block=True)


# -- Tcl (imported where used: only the Tcl tests need tkinter) ---------------------

def _stale() -> bool:
    from test_tcl_support import LIB, ROOT
    if not os.path.exists(LIB):
        return True
    sources = glob.glob(os.path.join(ROOT, "c_shim", "*")) + [
        os.path.join(ROOT, "aerostore", "tclbridge", "build.py"),
        os.path.join(ROOT, "aerostore", "_readgate.h"),
        os.path.join(ROOT, "aerostore", "_keymap_api.h")]
    return max(os.path.getmtime(p) for p in sources) > os.path.getmtime(LIB)


@pytest.fixture(scope="session")
def shim():
    """The path of the built shim (built here when missing or stale)."""
    from test_tcl_support import LIB
    if _stale():
        from aerostore.tclbridge import build
        build.build()
    return LIB


@pytest.fixture
def bare_tcl(shim):
    """A fresh interpreter with the package loaded and no store open; whatever
    store the test opens is closed after it."""
    from test_tcl_support import Interp, reset_store
    reset_store()
    yield Interp()
    reset_store()


@pytest.fixture
def tcl(bare_tcl):
    """A fresh interpreter on a fresh in-memory store."""
    bare_tcl.eval("aerostore::init :memory:")
    return bare_tcl


@pytest.fixture(scope="module")
def module_tcl(shim):
    """An interpreter on an in-memory store that one module's tests share (for
    tests that each add little, such as fuzz examples).  Do not mix it with the
    function-scoped Tcl fixtures in one module: they close the shared store."""
    from test_tcl_support import Interp, reset_store
    reset_store()
    t = Interp()
    t.call("aerostore::init", ":memory:")
    yield t
    reset_store()


def within(fn, *args, timeout=20.0):
    """``fn(*args)`` in a helper thread: its result, or its exception re-raised.
    Fails the test if it is still running after ``timeout`` seconds (a hang)."""
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} hung"
    if "error" in out:
        raise out["error"]
    return out.get("value")
