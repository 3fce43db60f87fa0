"""The one engine of the process, shared by every Tcl interpreter.

``aerostore::init`` opens it (once; the same directory again is fine, another
one is an error while it is open); every interpreter of every thread, and the
host Python (``state.database()``), then use the same ``Database``.  It lives
in this plain module -- not in the cffi module, which a host that imports it
itself would get twice.

The data directory is checked here, so that every reason it cannot be used is
one Tcl error, ``AEROSTORE USAGE DIR dir``: an empty path, a path through a
file, a directory that cannot be created or written.  Directories made here,
parents included, are mode 0700 (the store's files are 0600: the data is its
owner's alone), and each new name is fsynced into its parent.

Settings given before ``init`` are kept and applied when the store opens.
Shutdown (Tcl's exit handler, Python's atexit, ``aerostore::close``) closes the
store once: it flushes the WAL and stops background threads; later calls do
nothing.
"""

from __future__ import annotations

import atexit
import errno
import os
import threading

from ..storage.directory import directory_error
from ..config import Config
from ..errors import UsageError
from .. import readgate

__all__ = ["open_store", "database", "flights", "current", "fast_get", "directory", "use", "close",
           "shutdown", "set_config", "get_config", "DEFAULT_DIR", "TABLE"]

DEFAULT_DIR = "./aerostore_tcl_data"
TABLE = "FlightState"
MEMORY = ":memory:"

_lock = threading.RLock()
_db = None               # the Database, or None
_dir = None              # its absolute directory, or ":memory:"
_flights = None          # _db.table(TABLE)
current = None           # the same, public: None when no store is open (read on hot paths)
fast_get = None          # what the shim's `get` reads in C (c_shim/rowget.c): see _fast_get
_pending = Config()      # settings made before init
_changed: dict = {}      # key -> text, the settings made before init


def _fast_get(table):
    """(the TableStore, the Database, the key's position) of the autocommit
    ``table``: what c_shim/rowget.c starts from on each ``FlightState get
    key`` to answer a settled row without running Python, as Table.get's
    first lines and TableStore.row_at do (aerostore/database.py, heap.py).  It
    reads, on every call (nothing is cached: a reload rebinds them),
    ``database._closed``, ``store.fseq`` (even: no freeze running),
    ``store.slots[key]``, ``store.rows[slot]`` (the key: a settled row) and
    the row views ``store.columns.arrays[3]`` (columns.py), whose buffers it
    reads at the slot; anything else it leaves to Session.t_get.  Set and
    cleared with ``current``, each time followed by ``readgate.changed()``:
    the shim's path without the GIL reads a view of these objects that it
    made under the GIL (aerostore/readgate.py), which the change makes stale.  (Not their ``vars()``: making an object's
    ``__dict__`` turns off CPython 3.11's inline attribute values, and every
    attribute access of the engine on them got slower: +20% instructions in a
    top-50 search.)"""
    return (table._st, table._db, table._st.key_pos)


def _where(data_dir: str) -> str:
    if not data_dir:
        raise UsageError('cannot open data directory "": the path is empty', "DIR", "")
    return MEMORY if data_dir == MEMORY else os.path.abspath(data_dir)


def open_store(data_dir: str) -> str:
    """Open the process's store at ``data_dir`` (or find it open); its directory."""
    global _db, _dir, _flights, current, fast_get
    import aerostore
    from ..flightstate import FlightState

    where = _where(data_dir)
    with _lock:
        if _db is not None:
            if where != _dir:
                raise UsageError(f'aerostore is already open on "{_dir}": one store per process '
                                 f'(close it first with aerostore::close)', "OPEN", _dir)
            return _dir
        config = {k.split(".", 1)[1]: v for k, v in _changed.items()}
        try:
            db = aerostore.open(where, **config)
        except OSError as e:
            raise directory_error(where, e.errno or errno.EIO) from None
        try:
            _flights = db.create_table(FlightState)
        except BaseException:
            db.close()
            raise
        _db, _dir, current, fast_get = db, where, _flights, _fast_get(_flights)
        readgate.changed()
        return _dir


def use(db, where: str = MEMORY) -> None:
    """Make ``db`` (opened by the host Python) the store the Tcl commands use."""
    global _db, _dir, _flights, current, fast_get
    from ..flightstate import FlightState
    with _lock:
        if _db is not None and _db is not db:
            raise UsageError(f'aerostore is already open on "{_dir}"', "OPEN", _dir)
        _flights = current = db.create_table(FlightState)
        fast_get = _fast_get(_flights)
        _db, _dir = db, _where(where)
        readgate.changed()


def database():
    """The open Database; UsageError if ``aerostore::init`` has not run."""
    db = _db
    if db is None:
        raise UsageError("aerostore is not initialised: call aerostore::init first", "NOTOPEN")
    return db


def flights():
    """The FlightState table of the open store."""
    t = _flights
    if t is None:
        database()
    return t


def directory() -> str | None:
    return _dir


def set_config(key: str, value) -> None:
    with _lock:
        if _db is not None:
            _db.set_config(key, value)
        else:
            _pending.set(key, value)
            _changed[key] = _pending.get_text(key)


def get_config(key: str) -> str:
    with _lock:
        if _db is not None:
            return _db.get_config_text(key)
        return _pending.get_text(key)


def close() -> None:
    """Close the store (idempotent); settings made before init are forgotten too."""
    global _db, _dir, _flights, _pending, current, fast_get
    with _lock:
        fast_get = None
        readgate.changed()
        db, _db, _dir, _flights, current = _db, None, None, None, None
        _pending = Config()
        _changed.clear()
    if db is not None:
        db.close()


def shutdown() -> None:
    """Process exit: close the store; never raises (exit must not hang or fail)."""
    try:
        close()
    except Exception as e:       # reported, not raised: nothing can handle it at exit
        import sys
        print(f"aerostore: error while closing the store at exit: {e}", file=sys.stderr)


atexit.register(shutdown)
