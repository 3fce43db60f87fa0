"""Command-line tools for a closed data directory.

    python -m aerostore verify DIR                   check checkpoint.dat and wal.log, print a summary
    python -m aerostore stats DIR                    counters as "name value" lines
    python -m aerostore checkpoint DIR               fold the log into a new checkpoint
    python -m aerostore export DIR [TABLE] [-o FILE] the rows as TSV (sorted by key), on stdout or to FILE

They read the files directly (checkpoint plus log replay on plain dicts), without
the engine: no indexes are built and no TTL sweep runs, so what they show is
exactly what is on disk.  verify/stats/export take the directory lock shared and
change nothing (a torn tail is reported, not set aside); checkpoint takes it
exclusively.  A directory owned by a running process is refused (exit 3), since
its files change underneath.  ``export`` needs TABLE when the store holds more
than one table; ``-o FILE`` replaces FILE only once the whole export is written
(a temporary file renamed into place), so a failed export leaves it intact.

Exit codes: 0 ok, 1 damaged (CorruptError or an inconsistent log), 2 usage,
3 locked, 4 I/O error.  When the reader of stdout goes away (``export DIR |
head``) the tool stops quietly, as Unix tools do: it ends by SIGPIPE (a shell
reports 141), or returns ``EXIT_PIPE`` (141) where it cannot.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from bisect import bisect_right

from .database import index_entries
from .errors import AerostoreError, CorruptError, LockedError, StorageIOError, UsageError
from .schema import Schema
from .storage import DirectoryStorage, Sink, replay
from .storage.checkpoint import FILENAME as CHECKPOINT, read_checkpoint
from .storage.directory import WAL, lock_directory
from .storage.walformat import HEADER_SIZE
from .storage.walscan import WalScan, iter_commits, scan
from .ingest import write_file_atomic, write_rows
from .tsvcodec import codec

EXIT_OK, EXIT_DAMAGED, EXIT_USAGE, EXIT_LOCKED, EXIT_IO = 0, 1, 2, 3, 4
EXIT_PIPE = 128 + 13          # what a shell reports for a process ended by SIGPIPE


class Image(Sink):
    """The state of a data directory: the checkpoint with the log replayed on top
    (``replay(records, image)``).

    ``tables``: name -> ``[schema_dict, index_fields, {key: row}]`` in creation order.
    A log that decodes but makes no sense (an op on a table never created, a row
    of the wrong width) is ``CorruptError`` at the frame holding the commit;
    ``wscan`` (the log's ``WalScan``) locates it.
    """

    def __init__(self, checkpoint_csn: int, tables: list, wscan: WalScan | None = None):
        self.checkpoint_csn = checkpoint_csn
        self._wscan = wscan
        self.last_csn = checkpoint_csn
        self.commits = 0
        self.tables: dict = {}
        self._keypos: dict = {}
        for t in tables:        # checkpoint.CheckpointTable, of either format version
            name = t.schema["name"]
            self._create(name, t.schema, t.index_fields)
            kp = self._keypos[name]
            self.tables[name][2] = {r[kp]: r for r in t.rows}

    def _create(self, name: str, schema: dict, index_fields) -> None:
        self.tables[name] = [schema, list(index_fields), {}]
        self._keypos[name] = Schema.from_dict(schema).key_pos

    def corrupt(self, csn: int, what: str) -> CorruptError:
        wscan = self._wscan
        if wscan is None:
            return CorruptError("(log)", 0, f"commit {csn}: {what}")
        i = bisect_right(wscan.frame_last, csn - 1)
        offset = wscan.frame_ends[i - 1] if i else HEADER_SIZE
        return CorruptError(wscan.path, offset, f"commit {csn}: {what}")

    def _table(self, csn: int, name) -> list:
        try:
            return self.tables[name]
        except (KeyError, TypeError):
            raise self.corrupt(csn, f"table {name!r} does not exist") from None

    # -- the Sink methods replay() calls ---------------------------------------------
    def put(self, csn: int, table, key, values) -> None:
        t = self._table(csn, table)
        if len(values) != len(t[0]["fields"]):
            raise self.corrupt(csn, f"a row of {len(values)} values for table {table}")
        t[2][key] = tuple(values)

    def delete(self, csn: int, table, key) -> None:
        self._table(csn, table)[2].pop(key, None)

    def create_table(self, csn: int, table, schema) -> None:
        if table not in self.tables:
            try:
                self._create(table, schema, schema.get("indexes", ()))
            except (AttributeError, KeyError, TypeError, ValueError, UsageError):
                raise self.corrupt(csn, f"table {table!r} has an unreadable schema") from None

    def create_index(self, csn: int, table, field) -> None:
        idx = self._table(csn, table)[1]
        if field not in idx:
            idx.append(field)

    def drop_index(self, csn: int, table, field) -> None:
        idx = self._table(csn, table)[1]
        if field in idx:
            idx.remove(field)

    def committed(self, csn: int) -> None:
        self.last_csn = csn
        self.commits += 1

    @property
    def rows(self) -> int:
        return sum(len(t[2]) for t in self.tables.values())

    def checkpoint_tables(self) -> list:
        """The tables as ``Storage.checkpoint`` takes them, with their index arrays."""
        return [(s, idx, iter(rows.values()), index_entries(Schema.from_dict(s)))
                for s, idx, rows in self.tables.values()]


def load(path: str) -> tuple:
    """Read a directory without changing it: ``(image, wal_scan, checkpoint_bytes)``."""
    ckpt_path = os.path.join(path, CHECKPOINT)
    wal_path = os.path.join(path, WAL)
    csn, tables, ckpt_bytes = 0, [], 0
    if os.path.exists(ckpt_path):
        csn, tables = read_checkpoint(ckpt_path)
        ckpt_bytes = os.path.getsize(ckpt_path)
    wscan = scan(wal_path) if os.path.exists(wal_path) else None
    image = Image(csn, tables, wscan)
    if wscan is not None:
        if wscan.base_csn > csn:
            raise CorruptError(ckpt_path, 0, f"{WAL} continues from checkpoint {wscan.base_csn} but "
                                             f"{CHECKPOINT} holds only up to {csn}")
        replay(iter_commits(wal_path, wscan, csn), image)
    return image, wscan, ckpt_bytes


def _is_data_dir(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, n)) for n in (WAL, CHECKPOINT))


def wal_tail(wscan) -> tuple:
    """``(torn, padding)`` bytes after the valid log: a torn tail runs from
    ``wscan.end`` to the last non-zero byte; the zeros after it are preallocated
    space (the log grows in zero-filled steps), not data."""
    if wscan.end >= wscan.size:
        return 0, 0
    with open(wscan.path, "rb") as f:
        f.seek(wscan.end)
        rest = f.read(wscan.size - wscan.end)
    used = len(rest.rstrip(b"\0"))
    return used, len(rest) - used


def cmd_verify(path: str, out) -> None:
    image, wscan, ckpt_bytes = load(path)
    ntables = len(image.tables)
    out.write(f"{CHECKPOINT}: " + (f"csn {image.checkpoint_csn}, {ckpt_bytes} bytes\n"
                                    if ckpt_bytes else "none\n"))
    if wscan is None:
        out.write(f"{WAL}: none\n")
    else:
        torn, padding = wal_tail(wscan)
        out.write(f"{WAL}: base csn {wscan.base_csn}, {len(wscan.frame_ends)} frames, "
                  f"{wscan.commits} records, {wscan.end} bytes valid\n")
        if torn:
            out.write(f"{WAL}: torn tail of {torn} bytes at offset {wscan.end} "
                      f"(set aside as {WAL}.torn-N on the next open)\n")
        if padding:
            out.write(f"{WAL}: {padding} bytes of zero padding at offset {wscan.end + torn} "
                      "(preallocated space, not data)\n")
    for name, (_, idx, rows) in image.tables.items():
        out.write(f"table {name}: {len(rows)} rows, indexes {' '.join(idx) or '-'}\n")
    out.write(f"tables {ntables}\nrows {image.rows}\nrecords {image.commits}\n"
              f"last commit {image.last_csn}\nok\n")


def cmd_stats(path: str, out) -> None:
    image, wscan, ckpt_bytes = load(path)
    tail = wal_tail(wscan) if wscan else (0, 0)
    pairs = [("data_dir", os.path.abspath(path)), ("checkpoint_csn", image.checkpoint_csn),
             ("checkpoint_bytes", ckpt_bytes),
             ("wal_base_csn", wscan.base_csn if wscan else 0), ("wal_bytes", wscan.end if wscan else 0),
             ("wal_frames", len(wscan.frame_ends) if wscan else 0),
             ("wal_records", wscan.commits if wscan else 0), ("wal_torn_bytes", tail[0]),
             ("wal_padding_bytes", tail[1]),
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
        replay(rec.records, image)
        last = max(image.last_csn, rec.last_csn)
        rows = storage.checkpoint(last, image.checkpoint_tables())
    finally:
        storage.close()
    out.write(f"checkpoint rows={rows} csn={last}\n")


def cmd_export(path: str, out, table: str | None = None, output: str | None = None) -> None:
    image, _, _ = load(path)
    names = list(image.tables)
    if table is None:
        if len(names) != 1:
            raise UsageError(f"{path} holds {len(names)} tables: name the one to export: "
                             + (" ".join(names) if names else "(none)"), "TABLE")
        table = names[0]
    if table not in image.tables:
        raise UsageError(f"no table {table!r} in {path}; its tables: {' '.join(names) or '(none)'}",
                         "TABLE")
    schema_dict, _, rows = image.tables[table]
    schema = Schema.from_dict(schema_dict)
    kp = schema.key_pos
    rows = sorted(rows.values(), key=lambda r: r[kp])
    c = codec(schema)
    if output is None:
        write_rows(out.write, c, rows)
    else:
        write_file_atomic(output, lambda f: write_rows(f.write, c, rows, encode=True))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m aerostore",
        description="Tools for an Aerostore data directory that no process has open.",
        epilog="exit codes: 0 ok, 1 damaged, 2 usage, 3 locked, 4 I/O error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (("verify", "check checkpoint.dat and wal.log; print a summary"),
                       ("stats", 'counters as "name value" lines'),
                       ("checkpoint", "fold the log into a new checkpoint")):
        sp = sub.add_parser(name, help=text, description=text)
        sp.add_argument("dir", metavar="DIR", help="the data directory")
    sp = sub.add_parser("export", help="the rows of one table as TSV, sorted by key",
                        description="The rows of one table as TSV, sorted by key.")
    sp.add_argument("dir", metavar="DIR", help="the data directory")
    sp.add_argument("table", metavar="TABLE", nargs="?",
                    help="the table (required when the store holds more than one)")
    sp.add_argument("-o", "--output", metavar="FILE",
                    help="write to FILE, replacing it only once the export is complete "
                         "(default: stdout)")
    return p


_COMMANDS = {"verify": cmd_verify, "stats": cmd_stats, "checkpoint": cmd_checkpoint,
             "export": cmd_export}


def main(argv: list | None = None, out=None) -> int:
    """Run one command; returns the exit code (``--help`` and usage errors too)."""
    argv = sys.argv[1:] if argv is None else argv
    out = out or sys.stdout
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:              # --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    path = args.dir
    if not _is_data_dir(path):
        sys.stderr.write(f"{path}: not an aerostore data directory (no {WAL} or {CHECKPOINT})\n")
        return EXIT_USAGE
    extra = {"table": args.table, "output": args.output} if args.command == "export" else {}
    lock_fd = None
    try:
        if args.command != "checkpoint":
            lock_fd = lock_directory(path, exclusive=False)
        _COMMANDS[args.command](path, out, **extra)
        out.flush()
        return EXIT_OK
    except BrokenPipeError:
        return EXIT_PIPE
    except CorruptError as e:
        sys.stderr.write(f"CORRUPT: {e}\n")
        return EXIT_DAMAGED
    except LockedError as e:
        sys.stderr.write(f"{e}\n")
        return EXIT_LOCKED
    except (StorageIOError, OSError) as e:
        sys.stderr.write(f"I/O error: {e}\n")
        return EXIT_IO
    except AerostoreError as e:
        sys.stderr.write(f"{e}\n")
        return EXIT_USAGE
    finally:
        if lock_fd is not None:
            os.close(lock_fd)


def _run() -> None:
    """The process entry point: ``main``, then a quiet end when stdout's reader left.

    Python ignores SIGPIPE and raises BrokenPipeError instead; after ``main``
    has cleaned up, stdout is pointed at /dev/null (so the interpreter's final
    flush cannot complain) and the process ends by SIGPIPE, as ``cat`` would.
    """
    code = main()
    if code == EXIT_PIPE:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(code)


if __name__ == "__main__":
    _run()
