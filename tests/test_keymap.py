"""KeyMap (aerostore/keymap.py): a table's key -> slot map, against a dict model."""

import pickle
import sys

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import aerostore
from aerostore import FlightState
from aerostore.errors import CorruptError
from aerostore.keymap import KeyMap
from aerostore.storage.checkpoint import write_checkpoint
from aerostore.storage.fileio import DEFAULT

KEYS = st.sampled_from([f"K{i}" for i in range(40)] + ["", "é", "ÿx", "日本", "🛩", "K1\x00"])
SLOTS = st.integers(0, 60)


class KeyMapModel(RuleBasedStateMachine):
    """Every operation on a KeyMap and on a dict (plus the slot -> key inverse the
    KeyMap enforces), then the same answers and ``_check()``."""

    def __init__(self):
        super().__init__()
        self.m = KeyMap()
        self.d = {}

    def _slot_owner(self, slot):
        return next((k for k, s in self.d.items() if s == slot), None)

    @rule(key=KEYS, slot=SLOTS)
    def set(self, key, slot):
        owner = self._slot_owner(slot)
        if owner is not None and owner != key:
            with pytest.raises(ValueError, match="already holds another key"):
                self.m[key] = slot
            return
        self.m[key] = slot
        self.d[key] = slot

    @rule(key=KEYS)
    def delete(self, key):
        if key in self.d:
            del self.m[key]
            del self.d[key]
        else:
            with pytest.raises(KeyError):
                del self.m[key]

    @rule(key=KEYS)
    def pop(self, key):
        assert self.m.pop(key, None) == self.d.pop(key, None)

    @rule(pairs=st.lists(st.tuples(KEYS, SLOTS), max_size=8))
    def update(self, pairs):
        # one by one in the model; a refused pair stops the update where it is
        for key, slot in pairs:
            owner = self._slot_owner(slot)
            if owner is not None and owner != key:
                with pytest.raises(ValueError):
                    self.m.update([(key, slot)])
                continue
            self.m.update([(key, slot)])
            self.d[key] = slot

    @rule(keys=st.lists(KEYS, unique=True, max_size=30))
    def rebuild(self, keys):
        self.m = KeyMap.from_keys(list(keys))
        self.d = {k: i for i, k in enumerate(keys)}

    @rule(keys=st.lists(KEYS, max_size=30))
    def rebuild_last_wins(self, keys):
        self.m = KeyMap.from_keys(list(keys), last=True)
        self.d = {k: i for i, k in enumerate(keys)}        # a later place overwrites

    @rule()
    def clear(self):
        self.m.clear()
        self.d.clear()

    @rule(key=KEYS)
    def read(self, key):
        assert self.m.get(key) == self.d.get(key)
        assert self.m.get(key, -7) == self.d.get(key, -7)
        assert (key in self.m) == (key in self.d)
        if key in self.d:
            assert self.m[key] == self.d[key]
        else:
            with pytest.raises(KeyError):
                self.m[key]

    @invariant()
    def agrees(self):
        self.m._check()
        assert len(self.m) == len(self.d)
        by_slot = sorted(self.d.items(), key=lambda kv: kv[1])
        assert self.m.items() == by_slot
        assert self.m.keys() == [k for k, _ in by_slot] == list(self.m)
        assert self.m.values() == [s for _, s in by_slot]


TestKeyMapModel = KeyMapModel.TestCase
TestKeyMapModel.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


def test_many_keys_with_deletes_and_reuse():
    m = KeyMap()
    n = 50_000
    for i in range(n):
        m[f"F{i:07d}"] = i
    for i in range(0, n, 3):
        assert m.pop(f"F{i:07d}") == i
    for i in range(0, n, 3):                  # the freed slots go to new keys
        m[f"G{i}"] = i
    m._check()
    assert len(m) == n
    assert m.get("F0000001") == 1 and m.get("F0000003") is None and m["G3"] == 3
    again = KeyMap.from_keys(m.keys())
    again._check()
    assert again.items() == [(k, i) for i, k in enumerate(m.keys())]


def test_bad_input_is_refused_and_changes_nothing():
    m = KeyMap.from_keys(["a", "b"])
    with pytest.raises(TypeError, match="keys are str"):
        m[1] = 3
    with pytest.raises(ValueError, match="out of range"):
        m["c"] = -1
    with pytest.raises(TypeError):
        m["c"] = "x"
    with pytest.raises(ValueError, match="given twice"):
        KeyMap.from_keys(["a", "b", "a"])
    assert KeyMap.from_keys(["a", "b", "a"], last=True).items() == [("b", 1), ("a", 2)]
    with pytest.raises(TypeError, match="list of str"):
        KeyMap.from_keys(("a",))
    with pytest.raises(TypeError, match="keys are str"):
        KeyMap.from_keys(["a", None])
    with pytest.raises(TypeError, match="pairs"):
        m.update([("c", 2, 3)])
    with pytest.raises(TypeError, match="takes no arguments"):
        KeyMap({"a": 1})
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(m)
    assert m.get(1) is None and 1 not in m      # a non-str key is simply absent
    m._check()
    assert m.items() == [("a", 0), ("b", 1)]


def test_size_is_about_25_bytes_a_key():
    m = KeyMap.from_keys([f"F{i:07d}" for i in range(100_000)])
    assert sys.getsizeof(m) / len(m) < 30


def test_a_checkpoint_that_holds_a_key_twice_is_corrupt(tmp_path):
    d = str(tmp_path / "d")
    db = aerostore.open(d)
    db.create_table(FlightState)
    db.close()
    rows = [FlightState.check_row(("A", 1.0, 2.0, 3, 4, 5)), FlightState.check_row(("A", 1.0, 2.0, 3, 4, 6))]
    write_checkpoint(DEFAULT, d, 10**6, [(FlightState.to_dict(), [], rows)])
    with pytest.raises(CorruptError, match="FlightState.*'A' given twice"):
        aerostore.open(d)


def test_a_load_with_a_key_twice_is_refused_and_changes_nothing():
    with aerostore.open(":memory:") as db:
        t = db.create_table(FlightState)
        t.upsert(("K", 1.0, 2.0, 3, 4, 5))
        st = t._st
        dup = [FlightState.check_row(("A", 1.0, 2.0, 3, 4, 5)), FlightState.check_row(("A", 1.0, 2.0, 3, 4, 6))]
        with pytest.raises(ValueError, match="given twice"):
            st.load(dup)
        st._check()
        assert t.query().rows() == [("K", 1.0, 2.0, 3, 4, 5)]


def test_what_moves_or_frees_memory_holds_the_read_gate():
    # readers without the GIL (the Tcl shim's get, readgate.py) read the map's
    # arrays: a resize, growing the key array, moving a key and clear hold the
    # gate; an insert into room, a lookup and a delete do not (a delete drains)
    from aerostore import readgate
    m = KeyMap()
    m["a"] = 0

    def holds(fn):
        h = readgate.stats()["holds"]
        fn()
        return readgate.stats()["holds"] - h

    assert holds(lambda: m.get("a")) == 0
    assert holds(lambda: m.__setitem__("b", 1)) == 0          # room in both arrays
    assert holds(lambda: m.update((f"k{i}", i + 2) for i in range(100))) > 0    # they grow
    assert holds(lambda: m.__delitem__("b")) == 0
    assert holds(lambda: m.__setitem__("a", 1)) == 1          # a key moves to another slot
    assert holds(m.clear) == 1
    m._check()
    assert readgate.stats()["depth"] == 0
