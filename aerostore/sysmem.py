"""The C library's allocator, tuned where Aerostore's allocation pattern defeats its
defaults (glibc only; elsewhere these do nothing).

- ``map_big_arrays()``: every allocation of 1 MiB or more mapped on its own
  (``M_MMAP_THRESHOLD``).  Why: folding writes into an index's ``main``
  allocates and frees arrays of 8-16 MB per million entries.  glibc's default
  threshold rises to 32 MB after the first such free, so those arrays then come
  from the heap and their freed space stays resident: about 100 bytes per row
  at 1M rows.  Mapped on their own, they go back to the system when freed.
  Process-wide, set once, the first time an index is made.
- ``trim()``: give the free pages inside the heap back to the system
  (``malloc_trim``).  Why: a bulk ingest holds its packed rows (rowblock.py)
  in allocations under 1 MiB among the batches' short-lived ones; once all
  are freed, glibc returns only the top of the heap, and about 70 bytes per
  ingested row stayed resident (the decisions of 2026-11-29, fifth session).
  O(heap size), a few milliseconds; called after ingests of ``TRIM_ROWS`` rows
  or more.
"""

from __future__ import annotations

__all__ = ["map_big_arrays", "trim", "TRIM_ROWS"]

TRIM_ROWS = 1 << 16

_libc = None
_mapped = False


def _c():
    """The C library (None when it cannot be loaded or is not glibc)."""
    global _libc
    if _libc is None:
        try:
            import ctypes
            lib = ctypes.CDLL(None)
            lib.mallopt
            lib.malloc_trim
            _libc = lib
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


def map_big_arrays() -> None:
    """Set ``M_MMAP_THRESHOLD`` to 1 MiB, once per process."""
    global _mapped
    if _mapped:
        return
    _mapped = True
    lib = _c()
    if lib is not None:
        lib.mallopt(-3, 1 << 20)           # M_MMAP_THRESHOLD


def trim() -> None:
    """``malloc_trim(0)``: free pages inside the heap go back to the system."""
    lib = _c()
    if lib is not None:
        lib.malloc_trim(0)
