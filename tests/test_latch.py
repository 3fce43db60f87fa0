"""Latch: readers share, writers exclude, a waiting writer goes before new readers."""

import threading
import time

from aerostore.latch import Latch


def _in_thread(fn):
    done = threading.Event()
    th = threading.Thread(target=lambda: (fn(), done.set()), daemon=True)
    th.start()
    return done


def test_readers_share():
    latch = Latch()
    with latch.shared:
        assert _in_thread(lambda: latch.shared.__enter__() or latch.shared.__exit__()).wait(5)


def test_a_writer_waits_for_readers_and_excludes_them():
    latch = Latch()
    log = []
    latch.shared.__enter__()
    w = _in_thread(lambda: (latch.__enter__(), log.append("w"), latch.__exit__()))
    time.sleep(0.05)
    assert not w.is_set() and log == []
    latch.shared.__exit__()
    assert w.wait(5) and log == ["w"]
    with latch:
        r = _in_thread(lambda: (latch.shared.__enter__(), log.append("r"), latch.shared.__exit__()))
        time.sleep(0.05)
        assert not r.is_set()
    assert r.wait(5) and log == ["w", "r"]


def test_a_waiting_writer_goes_before_new_readers():
    latch = Latch()
    order = []
    latch.shared.__enter__()                    # an old reader
    w = _in_thread(lambda: (latch.__enter__(), order.append("writer"), latch.__exit__()))
    while not latch._writers_waiting:
        time.sleep(0.001)
    r = _in_thread(lambda: (latch.shared.__enter__(), order.append("new reader"), latch.shared.__exit__()))
    time.sleep(0.05)
    assert order == []                          # the new reader waits behind the writer
    latch.shared.__exit__()
    assert w.wait(5) and r.wait(5)
    assert order == ["writer", "new reader"]


def test_exclusive_is_reentrant_and_covers_shared_sections():
    latch = Latch()
    with latch:
        with latch:
            with latch.shared:
                assert latch.held_exclusively()
        assert latch.held_exclusively()
    assert not latch.held_exclusively()
    assert latch._readers == 0 and latch._owner is None


def test_the_gate_waits_for_a_writer_and_holds_nothing():
    """gate() returns at once when no writer is about, waits while one holds the latch,
    and takes nothing: a writer enters right after a reader passed it."""
    latch = Latch()
    latch.gate()                                    # free: returns at once
    with latch:
        latch.gate()                                # the holder itself passes
        passed = _in_thread(latch.gate)
        time.sleep(0.05)
        assert not passed.is_set()
    assert passed.wait(5)
    assert _in_thread(lambda: (latch.__enter__(), latch.__exit__())).wait(5)


def test_the_setting_turns_the_query_gate_off():
    """aerostore.readers_wait_for_writers: on (the default), a query waits for a writer
    section already running; off, it runs at once; a table made later, or a change
    made later, follows the setting."""
    import aerostore
    db = aerostore.open(":memory:", **{"aerostore.readers_wait_for_writers": "off"})
    try:
        t = db.create_table(aerostore.FlightState)
        t.upsert_many([(f"K{i}", 1.0, 1.0, i, 1, 1) for i in range(50)])
        st = t._st
        q = t.query().gt("altitude", 10).sort_by("lat").limit(5)
        q.rows()                            # (builds the columns, which takes the latch once)
        assert not st.gate_queries
        with st.latch:                      # a writer section that does not end meanwhile
            assert _in_thread(q.rows).wait(5), "a query waited with the gate off"
            db.set_config("aerostore.readers_wait_for_writers", "on")
            assert st.gate_queries
            waiting = _in_thread(q.rows)
            time.sleep(0.05)
            assert not waiting.is_set()
        assert waiting.wait(5)
        assert db.get_config_text("aerostore.readers_wait_for_writers") == "on"
    finally:
        db.close()
