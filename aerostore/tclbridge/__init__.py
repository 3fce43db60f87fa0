"""The Tcl extension: ``package require aerostore`` (docs/tcl.md).

``build`` compiles ``c_shim/`` with cffi (embedding mode) into
``libaerostore_tcl.so`` beside this file; the shim calls into ``session``
(one Session per Tcl interpreter), ``search`` (search options) and ``state``
(the one engine of the process).  See docs/tcl.md.
"""
