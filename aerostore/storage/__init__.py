"""Storage: bytes and files, behind one interface.

The engine sees only the ``Storage`` interface (interface.py: ``recover``,
``log``, ``checkpoint``, ``stats``, ``close``, with their contract) and the op
records it logs and replays (walformat.py).  Two implementations:
``MemoryStorage`` (``:memory:``) and ``DirectoryStorage`` (a data directory,
directory.py).  Below them, each file format beside the code that writes it:

| module | what |
|---|---|
| interface.py | ``Storage``, ``Ticket``, ``Recovered``, ``MemoryStorage`` |
| directory.py | ``DirectoryStorage``: lock file, recovery, checkpoints and log cuts |
| walformat.py | ``wal.log``'s format; the op records and ``replay`` |
| walscan.py | the recovery scan of ``wal.log`` (torn tail or damage) |
| walwriter.py | the log writer: group commit, failures, the log cut |
| checkpoint.py | ``checkpoint.dat``'s format, written and read |
| colsection.py | the binary column section both files use (a checkpoint's slices, the log's ``putcols``) |
| framing.py | what both files share: the checksummed frame, msgpack, errno names |
| fileio.py | the file layer every change to the directory goes through |
"""

from .directory import DirectoryStorage
from .interface import MemoryStorage, Recovered, Storage, Ticket
from .walformat import (Commit, CreateIndex, CreateTable, Del, DropIndex, Put, PutRows, Sink,
                        putrows_checked, replay)

__all__ = ["Storage", "Ticket", "Recovered", "MemoryStorage", "DirectoryStorage",
           "Commit", "Put", "PutRows", "Del", "CreateTable", "CreateIndex", "DropIndex", "Sink",
           "putrows_checked", "replay"]
