"""The log's bulk records (storage/walformat.py): a commit of 256 rows or more to one
table logs them as one ``putcols`` record (column sections, colsection.py), of
2-255 rows as one ``putrows``; recovery from the log alone gives back every
value of every column type, nulls included, through each of its paths: the
columns loaded whole (each key once, or some twice), rows made beside other
ops, and after a checkpoint.  A record that does not fit is CorruptError."""

import os
import random

import pytest

import aerostore
from aerostore import FlightState
from aerostore.errors import CorruptError
from aerostore.schema import Int, Key, table
from aerostore.storage import Sink, replay
from aerostore.storage.colsection import column_types
from aerostore.storage.walformat import PUTCOLS_MIN, putcols_record
from aerostore.storage.walscan import iter_commits, scan

from test_checkpoint_columns import Empty, Mixed, mixed_row, same


def logged(path) -> list:
    """The op names of every commit in the log of the store at ``path``."""
    wal = os.path.join(path, "wal.log")
    return [[op[0] for op in ops] for _, ops in iter_commits(wal, scan(wal), 0)]


def rows_of(rng, keys):
    return {k: mixed_row(rng, k) for k in keys}


@pytest.mark.parametrize("how", ["keys once", "keys twice", "beside other ops", "after a checkpoint"])
def test_bulk_commits_log_putcols_and_recover_every_value(tmp_path, how):
    rng = random.Random(how)
    d = str(tmp_path / "db")
    model = {}
    with aerostore.open(d) as db:
        t = db.create_table(Mixed)
        db.create_table(Empty)
        if how == "after a checkpoint":
            first = rows_of(rng, [f"c{i}" for i in range(50)])
            t.upsert_many(list(first.values()))
            model.update(first)
            db.checkpoint()
        batch = rows_of(rng, [f"k{i}\u00e9" if i % 9 == 0 else f"k{i}" for i in range(600)])
        t.upsert_many(list(batch.values()))
        model.update(batch)
        if how != "keys once":
            again = rows_of(rng, list(batch)[100:400])      # updates of 300 of them
            t.upsert_many(list(again.values()))
            model.update(again)
        if how in ("beside other ops", "after a checkpoint"):
            for k in list(model)[::13]:
                t.delete(k)
                del model[k]
            row = mixed_row(rng, "solo")
            t.upsert(row)
            model["solo"] = row
            small = rows_of(rng, [f"s{i}" for i in range(40)])
            t.upsert_many(list(small.values()))
            model.update(small)
        db.flush_log()
    ops = [op for commit in logged(d) for op in commit]
    assert "putcols" in ops and ops.count("putcols") == (1 if how == "keys once" else 2)
    if how in ("beside other ops", "after a checkpoint"):
        assert "putrows" in ops and "put" in ops and "del" in ops
    with aerostore.open(d) as db:
        same(db, model)
        db.table("Mixed")._check()


def test_a_feed_batch_logs_putrows_and_a_table_without_column_types_too(tmp_path):
    @table
    class Wide:
        k = Key()
        v = Int(lo=-1, hi=2 ** 64 - 1)          # no 64-bit type holds it

    assert column_types(Wide.fields) is None
    d = str(tmp_path / "db")
    with aerostore.open(d) as db:
        t = db.create_table(FlightState)
        t.upsert_many([(f"F{i}", 1.0, 2.0, i, 3, 4) for i in range(PUTCOLS_MIN - 1)])
        w = db.create_table(Wide)
        w.upsert_many([(f"W{i}", 2 ** 64 - 1 - i) for i in range(PUTCOLS_MIN + 10)])
    assert [ops for ops in logged(d) if ops[0] not in ("create_table",)] == [["putrows"], ["putrows"]]
    with aerostore.open(d) as db:
        assert db.table("FlightState").count() == PUTCOLS_MIN - 1
        assert db.table("Wide").get("W3") == ("W3", 2 ** 64 - 4)


def test_the_default_sink_puts_each_row_of_a_putcols_record():
    rng = random.Random(2)
    rows = [mixed_row(rng, f"k{i}") for i in range(300)]
    rec = putcols_record("Mixed", 0, column_types(Mixed.fields), rows)

    class Puts(Sink):
        def __init__(self):
            self.got = []

        def put(self, csn, table, key, values):
            self.got.append((table, key, values))

    sink = Puts()
    replay([(4, (rec,))], sink)
    assert sink.got == [("Mixed", r[0], r) for r in rows]
    assert all(type(r[5]) is bool or r[5] is None for _, _, r in sink.got)


def _record(**change):
    rows = [("F1", 1.0, None, 3, 4, 5), ("F2", 2.5, 7.0, None, 9, 10)]
    rec = list(putcols_record("FlightState", 0, column_types(FlightState.fields), rows))
    for field, value in change.items():
        i = ["kind", "table", "key_pos", "n", "types", "sections"].index(field)
        rec[i] = value(rec[i]) if callable(value) else value
    return tuple(rec)


BAD = {
    "no rows": (dict(n=0), "not n rows of typed columns"),
    "a count that is not an int": (dict(n="2"), "not n rows of typed columns"),
    "a column too few": (dict(types=lambda t: t[:-1]), "not n rows of typed columns"),
    "the key on a number": (dict(key_pos=1), "not n rows of typed columns"),
    "an unknown type": (dict(types=lambda t: t[:2] + ["<f4"] + t[3:]), "field 2: unknown column type"),
    "a short section": (dict(sections=lambda s: s[:1] + [s[1][:-1]] + s[2:]), "field 1: 16 bytes for 2 rows"),
    "bad flags": (dict(sections=lambda s: s[:1] + [b"\x01" + s[1][1:]] + s[2:]), "field 1: flags 0x1"),
    "a section not bytes": (dict(sections=lambda s: s[:3] + [list(s[3])] + s[4:]), "field 3: not bytes"),
    "one string too many": (dict(sections=lambda s: [s[0] + b"\nF3"] + s[1:]), "field 0: 3 strings"),
    "a null key": (dict(sections=lambda s: [b"\x01\x01" + s[0][1:]] + s[1:]), "a null key"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_putcols_record_that_does_not_fit_is_corrupt(tmp_path, name):
    from aerostore.database import _Replay
    change, says = BAD[name]
    rec = _record(**change)

    class Puts(Sink):
        def put(self, csn, table, key, values):
            raise AssertionError("no row of a bad record is applied")

    with pytest.raises(CorruptError, match=f"commit 7: a putcols record for 'FlightState'.*{says}"):
        replay([(7, (rec,))], Puts())
    db = aerostore.open(str(tmp_path / "db"))
    db.create_table(FlightState)
    try:
        with pytest.raises(CorruptError, match="commit 7: a putcols record for 'FlightState'"):
            replay([(7, (rec,))], _Replay(db))
    finally:
        db.close()


def test_recovery_refuses_putcols_columns_that_are_not_the_tables(tmp_path):
    from aerostore.database import _Replay
    db = aerostore.open(str(tmp_path / "db"))
    db.create_table(FlightState)
    try:
        for rec in (_record(types=lambda t: ["str"] * len(t)), _record(types=lambda t: t + ["str"]),
                    _record(types=lambda t: t[:3] + ["<f8"] + t[4:])):    # altitude as a float
            with pytest.raises(CorruptError, match="whose columns are not the table's fields"):
                replay([(7, (rec,))], _Replay(db))
    finally:
        db.close()


def test_recovery_refuses_putcols_for_a_table_the_writer_logs_as_rows(tmp_path):
    from aerostore.database import _Replay

    @table
    class Wide:
        k = Key()
        v = Int(lo=-1, hi=2 ** 64 - 1)

    db = aerostore.open(str(tmp_path / "db"))
    db.create_table(Wide)
    rec = ("putcols", "Wide", 0, 1, ["str", "<i8"], [b"\x00W1", b"\x00" + (5).to_bytes(8, "little")])
    try:
        with pytest.raises(CorruptError, match="whose columns are not the table's fields"):
            replay([(7, (rec,))], _Replay(db))
    finally:
        db.close()


def test_rows_the_column_types_refuse_are_logged_as_putrows(tmp_path, monkeypatch):
    """log_puts runs after the rows are installed: a batch whose columns cannot be
    made (the schema lets no such value through; forced here) is logged as
    putrows, and the commit stands."""
    from aerostore import heap

    def refuse(*a):
        raise OverflowError("forced")

    monkeypatch.setattr(heap, "putcols_record", refuse)
    d = str(tmp_path / "db")
    rows = [(f"F{i}", 1.0, 2.0, i, 3, 4) for i in range(PUTCOLS_MIN)]
    with aerostore.open(d) as db:
        db.create_table(FlightState).upsert_many(rows)
    assert [ops for ops in logged(d) if ops[0] != "create_table"] == [["putrows"]]
    with aerostore.open(d) as db:
        assert sorted(db.table("FlightState").query().rows()) == sorted(rows)
