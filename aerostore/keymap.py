"""KeyMap: a table's key -> slot map, in C (``_keymap.c``).

``TableStore.slots`` maps each key (a str) to the slot that holds its row.  A
dict did this at 59 bytes a key at 1M rows (its arrays, plus an int object per
slot) and took 0.35 s to build from a checkpoint's key list; a KeyMap keeps the
keys in an array by slot and a table of (hash, slot) pairs beside it: about 25
bytes a key, built by ``from_keys`` in one presized C pass.

Contract (the dict operations the engine uses, O(1) each unless said):

- ``m.get(key, default=None)``, ``m[key]`` (KeyError), ``key in m``, ``len(m)``;
  a key that is not a str is absent;
- ``m[key] = slot`` and ``m.update(pairs)`` (``(key, slot)`` pairs, in order):
  ``key`` must be a str (TypeError), ``slot`` an int in 0..2**31-1 (ValueError);
  a key given another slot moves there; a slot that holds another key is
  refused (ValueError), the map unchanged: each slot has at most one key;
- ``del m[key]`` (KeyError), ``m.pop(key[, default])``, ``m.clear()``;
- ``KeyMap.from_keys(keys, last=False)``: ``keys[i] -> i`` for a list of str
  (ValueError names a key given twice; with ``last``, its last place wins and
  the earlier ones stay empty: recovery's "each key's last op"); O(n);
- ``keys()``, ``values()``, ``items()``, ``iter(m)``: lists in slot order, O(slots);
- ``_check()``: asserts every invariant, O(slots); ``sys.getsizeof`` counts the
  arrays.  A KeyMap cannot be pickled or copied.

Each call holds the GIL and runs no Python code, so it is atomic for other
threads, as a dict's operations are.  The Tcl shim (c_shim/rowget.c) looks
keys up through the ``_C_API`` capsule without a Python call, and also
without the GIL (``lookup_ascii``, inside the read gate: readgate.py); for
that reader every method keeps the arrays whole: what moves or frees memory
holds the gate, and a removed key is let go after the readers inside left.
"""

from ._keymap import KeyMap

__all__ = ["KeyMap"]
