"""Command-line tools for a closed data directory.

    python -m aerostore verify DIR          check checkpoint.dat and wal.log, print a summary
    python -m aerostore stats DIR           counters as "name value" lines
    python -m aerostore checkpoint DIR      fold the log into a new checkpoint
    python -m aerostore export DIR [TABLE]  the rows as TSV on stdout (sorted by key)

They read the files directly (checkpoint plus log replay on plain dicts), without
the engine: no indexes are built and no TTL sweep runs, so what they show is
exactly what is on disk.  verify/stats/export take the directory lock shared and
change nothing (a torn tail is reported, not set aside); checkpoint takes it
exclusively.  A directory owned by a running process is refused (exit 3), since
its files change underneath.  Exit codes: 0 ok, 1 damaged (CorruptError or an
inconsistent log), 2 usage, 3 locked, 4 I/O error.
"""

from __future__ import annotations

import os
import sys
from bisect import bisect_right

from . import wal
from .checkpoint import FILENAME as CHECKPOINT, read_checkpoint
from .durable import WAL, DirectoryStorage, lock_directory
from .errors import AerostoreError, CorruptError, LockedError, StorageIOError, UsageError
from .schema import Schema

USAGE = """usage: python -m aerostore verify DIR
       python -m aerostore stats DIR
       python -m aerostore checkpoint DIR
       python -m aerostore export DIR [TABLE]"""


class Image:
    """The state of a data directory: the checkpoint with the log replayed on top.

    ``tables``: name -> ``[schema_dict, index_fields, {key: row}]`` in creation order.
    A log that decodes but makes no sense (an op on a table never created, a row
    of the wrong width) is ``CorruptError`` at the frame holding the commit;
    ``ws`` (the log's ``WalScan``) locates it.
    """

    def __init__(self, checkpoint_csn: int, tables: list, ws: wal.WalScan | None = None):
        self.checkpoint_csn = checkpoint_csn
        self._ws = ws
        self.last_csn = checkpoint_csn
        self.commits = 0
        self.tables: dict = {}
        self._keypos: dict = {}
        for schema, index_fields, rows in tables:
            self._create(schema["name"], schema, index_fields)
            kp = self._keypos[schema["name"]]
            self.tables[schema["name"]][2] = {r[kp]: r for r in rows}

    def _create(self, name: str, schema: dict, index_fields) -> None:
        self.tables[name] = [schema, list(index_fields), {}]
        self._keypos[name] = Schema.from_dict(schema).key_pos

    def _bad(self, csn: int, what: str) -> CorruptError:
        ws = self._ws
        if ws is None:
            return CorruptError("(log)", 0, f"commit {csn}: {what}")
        i = bisect_right(ws.frame_last, csn - 1)
        offset = ws.frame_ends[i - 1] if i else wal.HEADER_SIZE
        return CorruptError(ws.path, offset, f"commit {csn}: {what}")

    def _table(self, csn: int, name) -> list:
        try:
            return self.tables[name]
        except (KeyError, TypeError):
            raise self._bad(csn, f"table {name!r} does not exist") from None

    def apply(self, csn: int, ops) -> None:
        for op in ops:
            kind = op[0] if op else None
            if kind == "put" and len(op) == 4:
                t = self._table(csn, op[1])
                if len(op[3]) != len(t[0]["fields"]):
                    raise self._bad(csn, f"a row of {len(op[3])} values for table {op[1]}")
                t[2][op[2]] = tuple(op[3])
            elif kind == "del" and len(op) == 3:
                self._table(csn, op[1])[2].pop(op[2], None)
            elif kind == "create_table" and len(op) == 3:
                if op[1] not in self.tables:
                    try:
                        self._create(op[1], op[2], op[2].get("indexes", ()))
                    except (AttributeError, KeyError, TypeError, ValueError, UsageError):
                        raise self._bad(csn, f"table {op[1]!r} has an unreadable schema") from None
            elif kind == "create_index" and len(op) == 3:
                idx = self._table(csn, op[1])[1]
                if op[2] not in idx:
                    idx.append(op[2])
            elif kind == "drop_index" and len(op) == 3:
                idx = self._table(csn, op[1])[1]
                if op[2] in idx:
                    idx.remove(op[2])
            else:
                raise self._bad(csn, f"unknown operation {op!r:.80}")
        self.last_csn = csn
        self.commits += 1

    @property
    def rows(self) -> int:
        return sum(len(t[2]) for t in self.tables.values())

    def checkpoint_tables(self) -> list:
        return [(s, idx, iter(rows.values())) for s, idx, rows in self.tables.values()]


def load(path: str) -> tuple:
    """Read a directory without changing it: ``(image, wal_scan, checkpoint_bytes)``."""
    ckpt_path = os.path.join(path, CHECKPOINT)
    wal_path = os.path.join(path, WAL)
    csn, tables, ckpt_bytes = 0, [], 0
    if os.path.exists(ckpt_path):
        csn, tables = read_checkpoint(ckpt_path)
        ckpt_bytes = os.path.getsize(ckpt_path)
    ws = wal.scan(wal_path) if os.path.exists(wal_path) else None
    image = Image(csn, tables, ws)
    if ws is not None:
        if ws.base_csn > csn:
            raise CorruptError(ckpt_path, 0, f"{WAL} continues from checkpoint {ws.base_csn} but "
                                             f"{CHECKPOINT} holds only up to {csn}")
        for commit_csn, ops in wal.iter_commits(wal_path, ws, csn):
            image.apply(commit_csn, ops)
    return image, ws, ckpt_bytes


def _is_data_dir(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, n)) for n in (WAL, CHECKPOINT))


def cmd_verify(path: str, out) -> None:
    image, ws, ckpt_bytes = load(path)
    ntables = len(image.tables)
    out.write(f"{CHECKPOINT}: " + (f"csn {image.checkpoint_csn}, {ckpt_bytes} bytes\n"
                                    if ckpt_bytes else "none\n"))
    if ws is None:
        out.write(f"{WAL}: none\n")
    else:
        out.write(f"{WAL}: base csn {ws.base_csn}, {len(ws.frame_ends)} frames, "
                  f"{ws.commits} records, {ws.end} bytes valid\n")
        if ws.torn:
            out.write(f"{WAL}: torn tail of {ws.torn} bytes at offset {ws.end} "
                      f"(set aside as {WAL}.torn-N on the next open)\n")
    for name, (_, idx, rows) in image.tables.items():
        out.write(f"table {name}: {len(rows)} rows, indexes {' '.join(idx) or '-'}\n")
    out.write(f"tables {ntables}\nrows {image.rows}\nrecords {image.commits}\n"
              f"last commit {image.last_csn}\nok\n")


def cmd_stats(path: str, out) -> None:
    image, ws, ckpt_bytes = load(path)
    pairs = [("data_dir", os.path.abspath(path)), ("checkpoint_csn", image.checkpoint_csn),
             ("checkpoint_bytes", ckpt_bytes),
             ("wal_base_csn", ws.base_csn if ws else 0), ("wal_bytes", ws.end if ws else 0),
             ("wal_frames", len(ws.frame_ends) if ws else 0),
             ("wal_records", ws.commits if ws else 0), ("wal_torn_bytes", ws.torn if ws else 0),
             ("replayed_records", image.commits), ("last_csn", image.last_csn),
             ("tables", len(image.tables)), ("rows", image.rows)]
    pairs += [(f"rows.{name}", len(t[2])) for name, t in image.tables.items()]
    for k, v in pairs:
        out.write(f"{k} {v}\n")


def cmd_checkpoint(path: str, out) -> None:
    storage = DirectoryStorage(path)
    try:
        rec = storage.recover()
        image = Image(rec.checkpoint_csn, rec.tables)
        for csn, ops in rec.records:
            image.apply(csn, ops)
        last = max(image.last_csn, rec.last_csn)
        rows = storage.checkpoint(last, image.checkpoint_tables())
    finally:
        storage.close()
    out.write(f"checkpoint rows={rows} csn={last}\n")


def cmd_export(path: str, out, table: str | None = None) -> None:
    image, _, _ = load(path)
    if table is None:
        names = list(image.tables)
        if len(names) == 1:
            table = names[0]
        elif "FlightState" in names:
            table = "FlightState"
        else:
            raise UsageError(f"name the table to export: {' '.join(names) or '(no tables)'}")
    if table not in image.tables:
        raise UsageError(f"no table {table!r} in {path}")
    schema_dict, _, rows = image.tables[table]
    fields = Schema.from_dict(schema_dict).fields
    kp = next(i for i, f in enumerate(fields) if f.is_key)
    for row in sorted(rows.values(), key=lambda r: r[kp]):
        out.write("\t".join(f.to_text(v) for f, v in zip(fields, row)) + "\n")


def main(argv: list | None = None, out=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = out or sys.stdout
    cmds = {"verify": cmd_verify, "stats": cmd_stats, "checkpoint": cmd_checkpoint,
            "export": cmd_export}
    if len(argv) < 2 or argv[0] not in cmds or (len(argv) > 2 and argv[0] != "export") \
            or len(argv) > 3:
        sys.stderr.write(USAGE + "\n")
        return 2
    cmd, path = argv[0], argv[1]
    if not _is_data_dir(path):
        sys.stderr.write(f"{path}: not an aerostore data directory (no {WAL} or {CHECKPOINT})\n")
        return 2
    lock_fd = None
    try:
        if cmd != "checkpoint":
            lock_fd = lock_directory(path, exclusive=False)
        cmds[cmd](path, out, *argv[2:])
        return 0
    except CorruptError as e:
        sys.stderr.write(f"CORRUPT: {e}\n")
        return 1
    except LockedError as e:
        sys.stderr.write(f"{e}\n")
        return 3
    except (StorageIOError, OSError) as e:
        sys.stderr.write(f"I/O error: {e}\n")
        return 4
    except AerostoreError as e:
        sys.stderr.write(f"{e}\n")
        return 2
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


if __name__ == "__main__":
    sys.exit(main())
