"""Build the Tcl shim: ``python -m aerostore.tclbridge.build`` (``make shim``).

Compiles ``c_shim/*.c`` with cffi in embedding mode into
``aerostore/tclbridge/libaerostore_tcl.so``, the library that
``tcl/pkgIndex.tcl`` loads (docs/tcl.md, BUILDING).  Facts this relies on: Tcl stubs
(``-DUSE_TCL_STUBS``, ``-ltclstub8.6``); linked against this Python's
libpython with an rpath, so tclsh gets this Python and not the system's; the
``sys.executable`` of the building Python is compiled in, so that Python starts
inside tclsh from the same virtual environment whatever ``$PATH`` holds
(``$AEROSTORE_PYTHON`` overrides it at run time).

The embedding init code (run once, when the shim first calls into Python) puts
the repository that holds the library first on ``sys.path`` and refuses to run
if the process already imported ``aerostore`` from somewhere else: the library
and the package must be the same version.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
C_DIR = os.path.join(ROOT, "c_shim")
LIB_NAME = "libaerostore_tcl"
TARGET = os.path.join(HERE, LIB_NAME + ".so")

C_SOURCES = ["pystart.c", "convert.c", "options.c", "commands.c", "search.c", "rowget.c",
             "events.c", "durable.c"]

INIT_CODE = r'''
import os, sys
from _aerostore_tcl import ffi, lib

def _boot():
    """Import the aerostore package that sits beside this library."""
    so = ffi.string(lib.aerostore_shim_path()).decode("utf-8", "surrogateescape")
    root = os.path.dirname(os.path.dirname(os.path.dirname(so)))
    pkg = os.path.join(root, "aerostore")
    loaded = sys.modules.get("aerostore")
    if loaded is None:
        if root not in sys.path:
            sys.path.insert(0, root)
        import aerostore as loaded
    if getattr(loaded, "__file__", None):
        where = os.path.dirname(os.path.realpath(loaded.__file__))
    else:
        where = os.path.realpath(list(loaded.__path__)[0])
    if where != os.path.realpath(pkg):
        raise ImportError(f"the shim {so} belongs to the package in {pkg}, but this "
                          f"process imported aerostore from {where}")

try:
    _boot()
except BaseException as e:
    lib.aerostore_boot_failed(f"{type(e).__name__}: {e}".encode("utf-8", "replace"))
    raise

@ffi.def_extern(error=0)
def aerostore_py_boot():
    return 1
'''


def tcl_config() -> tuple[str, str, str]:
    """(include dir, stub library dir, stub library name) of the system's Tcl 8.6."""
    for inc in ("/usr/include/tcl8.6", "/usr/include/tcl", "/usr/local/include"):
        if os.path.exists(os.path.join(inc, "tcl.h")):
            break
    else:
        raise SystemExit("tcl.h not found: install tcl-dev (make sysdeps)")
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for libdir in (f"/usr/lib/{multiarch}", "/usr/lib", "/usr/local/lib", "/usr/lib64"):
        if glob.glob(os.path.join(libdir, "libtclstub8.6.a")):
            return inc, libdir, "tclstub8.6"
    raise SystemExit("libtclstub8.6.a not found: install tcl-dev (make sysdeps)")


def make_ffi() -> FFI:
    inc, tcl_libdir, stub = tcl_config()
    py_libdir = sysconfig.get_config_var("LIBDIR")
    py_lib = "python" + sysconfig.get_config_var("LDVERSION")
    ffi = FFI()
    ffi.embedding_api("int aerostore_py_boot(void);")
    ffi.cdef("const char *aerostore_shim_path(void);\n"
             "void aerostore_boot_failed(const char *message);")
    ffi.set_source(
        "_aerostore_tcl",
        '#include "shim.h"',
        sources=[os.path.join(C_DIR, f) for f in C_SOURCES],
        include_dirs=[C_DIR, inc, os.path.join(ROOT, "aerostore")],   # _readgate.h
        define_macros=[("USE_TCL_STUBS", "1"),
                       ("AEROSTORE_PYTHON", '"%s"' % sys.executable.replace('"', '\\"'))],
        libraries=[stub, py_lib, "dl", "pthread"],
        library_dirs=[tcl_libdir, py_libdir],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
        extra_link_args=["-Wl,-rpath," + py_libdir],
        py_limited_api=False,
    )
    ffi.embedding_init_code(INIT_CODE)
    return ffi


def build(verbose: bool = False) -> str:
    """Compile the shim; returns the path of the library."""
    tmp = os.path.join(HERE, "_build")
    os.makedirs(tmp, exist_ok=True)
    out = make_ffi().compile(tmpdir=tmp, target=LIB_NAME + ".*", verbose=verbose)
    shutil.move(out, TARGET + ".tmp")
    os.replace(TARGET + ".tmp", TARGET)   # atomic: a running tclsh keeps its old copy
    return TARGET


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    print(build(args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
