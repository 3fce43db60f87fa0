"""Bulk ingest (string and file), export, and their atomicity on bad input."""

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import aerostore
from aerostore import ingest
from aerostore.errors import DecodeError, UsageError
from aerostore.flightstate import FlightState

SEED = "OLD1\t1.5\t2.5\t100\t10\t1000\nOLD2\t\t\t\t\t\n"


@pytest.fixture
def db():
    d = aerostore.open(":memory:")
    d.create_table(FlightState)
    d.ingest_tsv("FlightState", SEED)
    yield d
    d.close()


def table_of(db, name="FlightState"):
    return sorted(db.table(name).query().rows())


def test_result_counts_and_format(db):
    r = db.ingest_tsv("FlightState", "A\t1\t2\t3\t4\t5\nB\t1\t2\t3\t4\t5\nOLD1\t9\t9\t9\t9\t9\nA\t0\t0\t0\t0\t0\n", 3)
    assert (r.rows_seen, r.inserted, r.updated, r.batches) == (4, 2, 2, 2)
    text = str(r)
    assert text.startswith("rows_seen=4 inserted=2 updated=2 batches=2 elapsed_ms=")
    assert float(text.rsplit("=", 1)[1]) == pytest.approx(r.elapsed_ms, abs=1e-3)
    assert db.table("FlightState").get("A") == ("A", 0.0, 0.0, 0, 0, 0)     # the later row wins
    assert db.table("FlightState").get("OLD1") == ("OLD1", 9.0, 9.0, 9, 9, 9)


def test_batches_are_transactions(db):
    commits = []
    db.add_publish_hook(lambda csn, changes: commits.append(len(changes)))
    r = db.ingest_tsv("FlightState", "".join(f"K{i}\t1\t2\t3\t4\t5\n" for i in range(10)), 4)
    assert r.batches == 3 and commits == [4, 4, 2]


def test_a_batch_that_loses_a_write_conflict_runs_again(db, monkeypatch):
    begun = []
    real_begin = db.begin

    def begin():
        txn = real_begin()
        begun.append(txn)
        if len(begun) == 1:     # another writer commits OLD1 after this snapshot was taken
            db.table("FlightState").set("OLD1", {"gs": 77})
        return txn

    monkeypatch.setattr(db, "begin", begin)
    r = db.ingest_tsv("FlightState", "OLD1\t1\t2\t3\t4\t5\nNEW1\t1\t2\t3\t4\t5\n")
    # the batch, the other writer, the batch again (retry.run_in_transaction)
    assert len(begun) == 3
    assert (r.rows_seen, r.inserted, r.updated, r.batches) == (2, 1, 1, 1)
    assert db.table("FlightState").get("OLD1") == ("OLD1", 1.0, 2.0, 3, 4, 5)


def test_empty_input(db):
    before = table_of(db)
    for data in ("", b"", "\n\n", "\ufeff", b"\xef\xbb\xbf\r\n"):
        r = db.ingest_tsv("FlightState", data)
        assert (r.rows_seen, r.inserted, r.updated, r.batches) == (0, 0, 0, 0)
    assert table_of(db) == before


@pytest.mark.parametrize("bad", [0, -1, "x", "", 1.5, True, None])
def test_bad_batch_size(db, bad):
    with pytest.raises(UsageError, match=r'bad batch_size ".*": must be an integer > 0') as ei:
        db.ingest_tsv("FlightState", "A\t1\t2\t3\t4\t5\n", bad)
    assert ei.value.tcl_errorcode[:2] == ["AEROSTORE", "USAGE"]
    assert db.table("FlightState").get("A") is None


def test_batch_size_as_text(db):
    assert db.ingest_tsv("FlightState", "A\t1\t2\t3\t4\t5\n", "16").batches == 1


def test_unknown_table(db):
    with pytest.raises(UsageError, match='no table "Nope"'):
        db.ingest_tsv("Nope", "A\t1\t2\t3\t4\t5\n")


GOOD = "".join("\n" if i == 24 else f"N{i}\t1\t2\t3\t4\t5\n" for i in range(50))   # line 25 blank
BAD_CASES = [
    # (data, line, column, message tail)  -- each after 50 good lines (lines 1..50)
    ("A\t1\t2\t3\t4", 51, 6, "expected 6 columns (flight_id lat lon altitude gs updated_at), got 5"),
    ("A\t1\t2\t3\t4\t5\t", 51, 7, "expected 6 columns (flight_id lat lon altitude gs updated_at), got 7"),
    ("A\tabc\t2\t3\t4\t5", 51, 2, 'bad value "abc" for field "lat": expected a finite number'),
    ("A\t1\t2\t3\t70000\t5", 51, 5, 'bad value "70000" for field "gs": expected an integer from 0 to 65535'),
    ("A\t1\t2\t-2147483649\t4\t5", 51, 4,
     'bad value "-2147483649" for field "altitude": expected an integer from -2147483648 to 2147483647'),
    ("A\t1\t2\t3\t4\t18446744073709551616", 51, 6,
     'bad value "18446744073709551616" for field "updated_at": expected an integer from 0 to '
     '18446744073709551615'),
    ("A\tNaN\t2\t3\t4\t5", 51, 2, 'bad value "NaN" for field "lat": expected a finite number'),
    ("A\t1\tinf\t3\t4\t5", 51, 3, 'bad value "inf" for field "lon": expected a finite number'),
    ("\t1\t2\t3\t4\t5", 51, 1, 'empty key (field "flight_id")'),
    ("A\t1\t2\t3\t4\t5\rB", 51, 6, "CR inside a line (only CRLF line endings are accepted)"),
    (b"A\x80\t1\t2\t3\t4\t5", 51, 1, "invalid UTF-8 (byte 0x80)"),
    ("\ufeffA\t1\t2\tx\t4\t5", 51, 4,
     'bad value "x" for field "altitude": expected an integer from -2147483648 to 2147483647'),
]


def _data(bad, crlf):
    good = GOOD.replace("\n", "\r\n") if crlf else GOOD
    if isinstance(bad, bytes):
        return good.encode() + bad + b"\nZ\t1\t2\t3\t4\t5\n"
    return good + bad + "\nZ\t1\t2\t3\t4\t5"          # good line after, no final newline


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("bad,line,column,what", BAD_CASES)
def test_bad_input_applies_nothing(db, tmp_path, bad, line, column, what, crlf):
    before = table_of(db)
    data = _data(bad, crlf)
    path = tmp_path / "in.tsv"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    calls = [lambda: db.ingest_tsv("FlightState", data, 7),
             lambda: db.ingest_file("FlightState", path, 7),
             lambda: db.ingest_file("FlightState", str(path), 7, hold_bytes=0)]
    for call in calls:
        with pytest.raises(DecodeError) as ei:
            call()
        e = ei.value
        assert str(e) == f"decode error at line {line} column {column}: {what}"
        assert e.tcl_errorcode == ["AEROSTORE", "DECODE", str(line), str(column)]
        assert table_of(db) == before


def test_bom_accepted_at_start_only(db, tmp_path):
    r = db.ingest_tsv("FlightState", "\ufeffB1\t1\t2\t3\t4\t5\r\n")
    assert r.inserted == 1 and db.table("FlightState").exists("B1")
    p = tmp_path / "bom.tsv"
    p.write_bytes(b"\xef\xbb\xbfB2\t1\t2\t3\t4\t5\n")
    assert db.ingest_file("FlightState", p).inserted == 1
    assert db.table("FlightState").exists("B2")


def test_ingest_through_a_transaction(db):
    txn = db.begin()
    r = ingest.ingest_tsv(db, "FlightState", "T1\t1\t2\t3\t4\t5\nT2\t1\t2\t3\t4\t5\nT1\t\t\t\t\t\n", 2, txn=txn)
    assert (r.inserted, r.updated, r.batches) == (2, 1, 2)
    assert not db.table("FlightState").exists("T1")          # not committed yet
    assert txn.table("FlightState").get("T1") == ("T1", None, None, None, None, None)
    txn.rollback()
    assert not db.table("FlightState").exists("T1")
    with db.transaction() as txn:
        ingest.ingest_tsv(db, "FlightState", "T3\t1\t2\t3\t4\t5\n", txn=txn)
    assert db.table("FlightState").exists("T3")


def _file(tmp_path, n, start=0, name="big.tsv"):
    p = tmp_path / name
    p.write_text("".join(f"F{i:06d}\t{i / 7!r}\t{-i / 3!r}\t{i * 10}\t{i % 600}\t{1700000000 + i}\n"
                         for i in range(start, start + n)))
    return p


@pytest.mark.parametrize("hold", [64 << 20, 0])
def test_ingest_file_streams_in_blocks(db, tmp_path, monkeypatch, hold):
    monkeypatch.setattr(ingest, "_READ_BYTES", 1000)        # many blocks, lines cut across reads
    p = _file(tmp_path, 3000)
    calls = []
    r = db.ingest_file("FlightState", p, 256, hold_bytes=hold,
                       progress=lambda phase, rows, secs: calls.append((phase, rows)),
                       progress_interval=0.0)
    assert (r.rows_seen, r.inserted, r.updated, r.batches) == (3000, 3000, 0, 12)
    assert ("validate", 3000) in calls and calls[-1] == ("apply", 3000)
    assert [c for c in calls if c[0] == "apply"] == sorted(c for c in calls if c[0] == "apply")
    assert db.table("FlightState").get("F002999") == ("F002999", 2999 / 7, -2999 / 3, 29990, 599, 1700002999)
    r = db.ingest_file("FlightState", _file(tmp_path, 2000, 2000, "more.tsv"), 1000, hold_bytes=hold)
    assert (r.inserted, r.updated, r.batches) == (1000, 1000, 2)


def test_ingest_file_errors(db, tmp_path):
    with pytest.raises(UsageError, match="cannot read"):
        db.ingest_file("FlightState", tmp_path / "missing.tsv")
    with pytest.raises(UsageError, match="cannot read"):
        db.ingest_file("FlightState", tmp_path)


def test_export_then_ingest_reproduces_the_table(db, tmp_path, open_db):
    db.ingest_tsv("FlightState", "Zürich✈\t0.1\t-0.0\t-5\t0\t18446744073709551615\n")
    text = db.export_tsv("FlightState")
    assert sorted(text.splitlines()) == sorted(
        ["OLD1\t1.5\t2.5\t100\t10\t1000", "OLD2\t\t\t\t\t", "Zürich✈\t0.1\t0.0\t-5\t0\t18446744073709551615"])
    p = tmp_path / "out.tsv"
    assert db.export_tsv("FlightState", p) == 3
    buf = io.StringIO()
    assert db.export_tsv("FlightState", buf) == 3
    assert buf.getvalue() == p.read_text(encoding="utf-8") == text
    other = open_db(":memory:")
    other.create_table(FlightState)
    assert other.ingest_file("FlightState", p).inserted == 3
    assert table_of(other) == table_of(db)


def test_export_with_query(db):
    db.ingest_tsv("FlightState", "A\t1\t2\t30000\t4\t5\nB\t1\t2\t100\t4\t5\n")
    q = db.table("FlightState").query().gt("altitude", 1000)
    assert db.export_tsv("FlightState", query=q) == "A\t1.0\t2.0\t30000\t4\t5\n"
    with db.transaction() as txn:
        txn.table("FlightState").delete("A")
        q = txn.table("FlightState").query().gt("altitude", 10)
        assert sorted(db.export_tsv("FlightState", query=q, txn=txn).splitlines()) == [
            "B\t1.0\t2.0\t100\t4\t5", "OLD1\t1.5\t2.5\t100\t10\t1000"]
    with pytest.raises(UsageError):
        db.export_tsv("FlightState", query=object())


def test_durable_ingest_survives_reopen(tmp_path):
    d = tmp_path / "data"
    with aerostore.open(str(d)) as db:
        db.create_table(FlightState)
        r = db.ingest_tsv("FlightState", "".join(f"K{i}\t{i}.5\t\t{i}\t\t{i}\n" for i in range(500)), 64)
        assert r.batches == 8
        exported = db.export_tsv("FlightState")
    with aerostore.open(str(d)) as db:
        assert db.table("FlightState").count() == 500
        assert sorted(db.export_tsv("FlightState").splitlines()) == sorted(exported.splitlines())


finite = st.floats(allow_nan=False, allow_infinity=False)
keys = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\r\n"), min_size=1, max_size=10)
rows = st.lists(st.tuples(keys, st.none() | finite, st.none() | finite, st.none() | st.integers(-2**31, 2**31 - 1),
                          st.none() | st.integers(0, 65535), st.none() | st.integers(0, 2**64 - 1)),
                max_size=25, unique_by=lambda r: r[0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.integers(1, 8))
def test_roundtrip_through_the_database(rows, batch):
    # hypothesis runs the body many times per fixture: each example closes its own
    with aerostore.open(":memory:") as src, aerostore.open(":memory:") as dst:
        t = src.create_table(FlightState)
        dst.create_table(FlightState)
        t.upsert_many([FlightState.check_row(r) for r in rows])
        text = src.export_tsv("FlightState")
        r = dst.ingest_tsv("FlightState", text.encode(), batch)
        assert r.inserted == len(rows)
        assert table_of(dst) == table_of(src)
        assert sorted(dst.export_tsv("FlightState").splitlines()) == sorted(text.splitlines())


def test_failure_mid_ingest_reports_what_was_committed(db, monkeypatch):
    from aerostore.errors import StorageIOError
    from aerostore.txn import Transaction
    real = Transaction.commit
    calls = []

    def commit(self):
        calls.append(1)
        if len(calls) == 3:
            raise StorageIOError("disk full")
        return real(self)

    monkeypatch.setattr(Transaction, "commit", commit)
    with pytest.raises(StorageIOError) as ei:
        db.ingest_tsv("FlightState", "".join(f"P{i}\t1\t2\t3\t4\t5\n" for i in range(10)), 3)
    r = ei.value.ingested
    assert (r.inserted, r.updated, r.batches) == (6, 0, 2)
    assert db.table("FlightState").query().match("flight_id", "P*").count() == 6


def test_ingest_tsv_progress(db):
    calls = []
    db.ingest_tsv("FlightState", "".join(f"G{i}\t1\t2\t3\t4\t5\n" for i in range(10)), 4,
                  progress=lambda *a: calls.append(a), progress_interval=0.0)
    assert [c[:2] for c in calls] == [("apply", 4), ("apply", 8), ("apply", 10), ("apply", 10)]
    assert all(c[2] >= 0 for c in calls)


def test_export_to_an_unwritable_path(db, tmp_path):
    with pytest.raises(UsageError, match="cannot write") as ei:
        db.export_tsv("FlightState", tmp_path)                  # a directory
    assert ei.value.tcl_errorcode == ["AEROSTORE", "USAGE", "FILE"]


# -- export writes a whole file or leaves the old one --------------------------------------------

def test_failed_export_leaves_the_file_intact(db, tmp_path, monkeypatch):
    """write_tsv -file F / export_tsv(path): a failure must not truncate F."""
    t = db.table("FlightState")
    t.query().delete()
    t.upsert(("A", 1.0, 2.0, 3, 4, 5))
    target = tmp_path / "out.tsv"
    target.write_text("precious\n")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(ingest.os, "fsync", boom)
    with pytest.raises(UsageError, match="No space left") as ei:
        db.export_tsv("FlightState", str(target))
    assert ei.value.tcl_errorcode == ["AEROSTORE", "USAGE", "FILE"]
    monkeypatch.undo()
    assert target.read_text() == "precious\n"
    assert os.listdir(tmp_path) == ["out.tsv"]                      # the temporary file is gone
    assert db.export_tsv("FlightState", str(target)) == 1
    assert target.read_text() == "A\t1.0\t2.0\t3\t4\t5\n"


def test_export_keeps_mode_follows_symlinks_and_creates_with_umask(db, tmp_path):
    db.table("FlightState").query().delete()
    db.table("FlightState").upsert(("A", 1.0, 2.0, 3, 4, 5))
    target = tmp_path / "out.tsv"
    target.write_text("old\n")
    os.chmod(target, 0o604)
    db.export_tsv("FlightState", target)                        # a PathLike
    assert os.stat(target).st_mode & 0o777 == 0o604
    link = tmp_path / "link.tsv"
    os.symlink(target, link)
    db.export_tsv("FlightState", str(link))
    assert os.path.islink(link) and target.read_text() == "A\t1.0\t2.0\t3\t4\t5\n"
    old = os.umask(0o027)
    try:
        db.export_tsv("FlightState", str(tmp_path / "new.tsv"))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "new.tsv").st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["link.tsv", "new.tsv", "out.tsv"]


def test_export_of_a_stored_lone_surrogate_is_a_usage_error(db, tmp_path):
    """Only the unvalidated bulk path can still store one; export names the row
    instead of failing with UnicodeEncodeError, and leaves the file alone."""
    with db.transaction() as txn:
        txn.table("FlightState").upsert_checked([("bad\ud800", None, None, None, None, None)])
    target = tmp_path / "out.tsv"
    target.write_text("precious\n")
    for dest in (str(target), io.StringIO()):
        with pytest.raises(UsageError, match=r'cannot export row "bad\\ud800" of table FlightState: '
                                             r'field "flight_id" holds a lone surrogate') as ei:
            db.export_tsv("FlightState", dest)
        assert ei.value.tcl_errorcode == ["AEROSTORE", "USAGE", "VALUE", "flight_id"]
    assert target.read_text() == "precious\n" and os.listdir(tmp_path) == ["out.tsv"]


@pytest.mark.parametrize("name", ["a\x00b", b"a\x00b"])
def test_a_file_name_with_a_nul_is_a_usage_error(db, name):
    """No file system takes a NUL in a name: USAGE FILE (as for any unusable file), not
    Python's ValueError, for reading and writing alike; nothing changes."""
    before = db.table("FlightState").count()
    with pytest.raises(UsageError, match="may not contain a NUL") as e:
        db.ingest_file("FlightState", name)
    assert e.value.code == ("AEROSTORE", "USAGE", "FILE")
    with pytest.raises(UsageError, match="may not contain a NUL") as e:
        db.export_tsv("FlightState", name)
    assert e.value.code == ("AEROSTORE", "USAGE", "FILE")
    assert db.table("FlightState").count() == before
