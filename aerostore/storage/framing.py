"""What the log and the checkpoint share: the checksummed frame, msgpack, error names.

Both files are a magic string followed by frames (walformat.py and
checkpoint.py describe each file field by field).  Every frame starts the same
way (integers little-endian):

| offset | size | field |
|---|---|---|
| 0 | 4 | ``length``: a byte count (what it counts is the file's choice; >= 1) |
| 4 | 4 | ``crc``: CRC-32 of the length field, then of bytes 8 .. end of the frame |
| 8 | ... | the rest of the frame |

Payloads are msgpack.  Strings may hold lone surrogates (Tcl can produce them):
they are written and read with ``surrogatepass``.  Arrays decode as tuples,
except inside maps (schema dicts), where they decode as lists.
"""

from __future__ import annotations

import errno
import struct
import zlib

import msgpack

__all__ = ["LEN", "HEAD", "frame", "frame_head", "checksum", "pack", "unpack", "errno_name"]

LEN = struct.Struct("<I")
HEAD = struct.Struct("<II")  # length, crc


def frame(length: int, body) -> bytes:
    """The frame ``length | crc | body`` (``body``: bytes 8 .. end of the frame)."""
    n = LEN.pack(length)
    return b"".join((n, LEN.pack(zlib.crc32(body, zlib.crc32(n))), body))


def frame_head(parts) -> bytes:
    """The ``length | crc`` of a frame whose payload is ``parts`` (bytes-like, one byte an
    element) back to back, so a big payload is framed without being copied together."""
    length = sum(len(p) for p in parts)
    if not 0 < length < 1 << 32:
        raise ValueError(f"a frame payload of {length} bytes")
    n = LEN.pack(length)
    crc = zlib.crc32(n)
    for p in parts:
        crc = zlib.crc32(p, crc)
    return n + LEN.pack(crc)


def checksum(buf, pos: int, end: int) -> int:
    """The CRC a frame at ``pos`` ending at ``end`` must carry (compare with its ``crc``)."""
    return zlib.crc32(buf[pos + 8:end], zlib.crc32(buf[pos:pos + 4]))


def pack(obj) -> bytes:
    """msgpack ``obj``.  Strings with lone surrogates (which Tcl can produce) are
    written with ``surrogatepass``; that handler costs a third more, so it is
    only used when the fast path refuses."""
    try:
        return msgpack.packb(obj)
    except UnicodeEncodeError:
        return msgpack.packb(obj, unicode_errors="surrogatepass")


def _lists(d: dict) -> dict:
    """msgpack object hook: arrays inside maps (schema dicts) come back as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def unpack(data):
    """Decode one msgpack payload (arrays as tuples, maps' arrays as lists).

    Raises whatever msgpack raises on bad input (several unrelated types):
    callers turn that into ``CorruptError`` at the frame's offset.
    """
    return msgpack.unpackb(data, use_list=False, object_hook=_lists,
                           unicode_errors="surrogatepass", strict_map_key=False)


def errno_name(e: OSError) -> str:
    """The errno's symbolic name (``"ENOSPC"``) for an error code; ``"EIO"`` if none."""
    return errno.errorcode.get(e.errno or 0, "EIO")
