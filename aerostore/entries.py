"""The index entry encoding, in one place.

For int, bool and float fields an index entry is one packed int,
``key << SLOT_BITS | slot`` (``entry & SLOT_MASK`` is the slot,
``entry >> SLOT_BITS`` the key).  A float's key is its IEEE-754 bit pattern
made order-preserving (negative numbers mirrored), so ranges and sorts on
floats are integer bisects; ``float_key``, ``float_keys`` and
``np_float_keys`` are that one mapping for a scalar, a list and a numpy array.

``EntryForm`` names how an index hands out entries (its ``entry_form``).
"""

from __future__ import annotations

from array import array
from enum import Enum
from struct import Struct

import numpy as np

__all__ = ["SLOT_BITS", "SLOT_MASK", "EntryForm", "float_key", "float_keys", "np_float_keys"]

SLOT_BITS = 32
SLOT_MASK = (1 << SLOT_BITS) - 1
_M63 = (1 << 63) - 1
_PACK_D = Struct("<d").pack
_UNPACK_Q = Struct("<q").unpack


class EntryForm(str, Enum):
    """How an index hands out entries.  A str: equal to, hashing and formatting as its value."""

    PACKED = "packed"   # packed ints, ``key << SLOT_BITS | slot``
    TUPLE = "tuple"     # (value, slot) tuples (str fields)
    PAIRS = "pairs"     # a chunk with parallel ``keys`` and ``slots`` lists (ArrayIndex)

    __str__ = str.__str__
    __format__ = str.__format__


def float_key(x: float) -> int:
    """Order-preserving int for a finite float (0.0 and -0.0 share a key)."""
    i = _UNPACK_Q(_PACK_D(x))[0]
    return i if i >= 0 else -(i & _M63)


def float_keys(xs) -> list:
    """``float_key`` over a sequence of floats, at C speed for the bit casts."""
    q = array("q")
    q.frombytes(array("d", xs).tobytes())
    return [i if i >= 0 else -(i & _M63) for i in q]


def np_float_keys(xs) -> np.ndarray:
    """``float_key`` over a sequence of floats, as an int64 numpy array (vectorised)."""
    i = np.array(xs, dtype=np.float64).view(np.int64)
    return np.where(i >= 0, i, -(i & _M63))
