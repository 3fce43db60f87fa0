"""Keyscan: glob ``match`` terms on the key field, over every key at once.

Why: a ``match`` term runs per row as a compiled regex (query.py), one Python
call per row with the GIL held: about 140 ms for ``match flight_id *77*`` at
1M rows.  Here the keys of a table sit in one byte buffer, one line per slot,
and a term is answered for all of them by C loops: a literal search in numpy
(``*77*``, ``UAL*``, ``*123``), else one regex over the buffer or over the
lines holding the pattern's longest literal.  The planner's column scan
(planner.py, ``Scan``) then treats the buffer's answer like a column's.

The buffer (``Buffer``, immutable once built):

- ``data``: ``b"\\n"``, then per slot of the heap (heap.py: ``rows``) its key
  and ``b"\\n"``; a free slot has an empty line.  A key never holds a LF
  (schema.py), so line i is slot i: ``data[starts[i]:starts[i + 1] - 1]``.
- ``starts``: n + 1 offsets (int32 below 2 GiB of keys, else int64).
- only ASCII keys: a heap holding a non-ASCII key gets a buffer marked
  ``usable = False``, and its match terms run per row (so a match keeps the
  per-row path's exact semantics: ``re`` on str, Unicode case folding).

Exactness while writers insert, delete and reuse slots.  The key of an
occupied slot never changes (a version chain holds one key: ``heap._check``);
a slot gets another key only when it is freed and allocated again
(``TableStore._alloc``).  Writers call ``KeyScan.reused(slots)`` there, under
the exclusive latch, stamping those slots with the current generation
``gen``; a build bumps ``gen`` under the shared latch (no writer section in
progress), then reads the rows.  So for a buffer ``B``:

- a slot ``i < B.n`` with ``stamps[i] <= B.gen`` holds, whenever it is
  occupied, the key of its line;
- a slot stamped later (reused since the build) or past ``B.n`` (allocated
  since) is *unsure*: its line says nothing.

Readers (the planner): ``hits(store, terms)`` answers the key match terms
(``split`` says which) as a bool array over the buffer's lines, or None
(nothing to answer, or no usable buffer).  For each part of slots, after the
columns' marks of that part (settled-and-matching, chained), ``narrow``
keeps a settled slot only if its line matches and it is not unsure, and moves
the unsure settled slots to the chained ones, which the planner reads one by
one at the query's snapshot and checks against the whole predicate.

Why a settled slot needs no recheck of its key: a slot read settled (columns
``FROZEN``) holds the row every snapshot sees (columns.py), the row of the key
it had then; the stamps are read after that state, and a reuse that happened
before the state read stamped the slot before it (the grown stamp array
copies every earlier stamp), so a clean stamp means the line is that key.
The result never holds a key the snapshot does not see: settled rows are
visible to every snapshot, the others are read at the snapshot.  A slot
reused after the stamps were read holds only versions newer than the
snapshot (freeing it needed its old row's delete visible to every registered
snapshot, and the new row commits after the read), which the visibility
check drops.

Rebuilds: once the unsure slots (reused since the build, or allocated past
it) pass ``max(_STALE_MIN, n / 16)``, the next query builds a new buffer
(O(n) in C, about 10-20 ms at 1M rows, without the latch but for one short
shared section).  A heap replaced by a bulk load (``TableStore.load``: a new
``rows`` list) is noticed by identity.  Recovery's ``replay_put`` reuses
slots without ``_alloc``: it runs before any query, so before any buffer.
The keys come from ``rows`` itself, where a settled slot holds its key
(heap.py).

Memory: the buffer (key bytes + 1 per slot, 8 bytes of offset per slot), a
lower-cased copy built on the first case-insensitive term with letters, and
4 bytes of stamp per slot.

Not thread-safe by itself beyond what is said above: ``reused`` runs under
the table's exclusive latch, everything else is a reader's.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from .query import MATCH_OPS, glob_tokens

__all__ = ["KeyScan", "Buffer", "KeyHits", "split", "planned", "hits", "keyscan_of"]

_STALE_MIN = 4096        # unsure slots a buffer tolerates before a rebuild, at least
_NL = 10                 # b"\n"
_PIECE = {"star": b".*", "any": b".", "never": b"(?!)"}   # no DOTALL: . never matches the LF
_new_lock = threading.Lock()


def split(schema, terms) -> tuple[list, list]:
    """(the terms a buffer answers, the rest): ``match``, ``notmatch``, ``match_case``,
    ``notmatch_case`` on the key field with an ASCII pattern.  O(terms)."""
    kp = schema.key_pos
    mine, rest = [], []
    for t in terms:
        (mine if t.pos == kp and t.op in MATCH_OPS and t.values[1].isascii() else rest).append(t)
    return mine, rest


def planned(store, terms) -> tuple[list, list]:
    """``split``, unless ``store``'s current buffer is known unusable (a non-ASCII
    key): what ``hits`` would answer, without building anything (``explain``)."""
    mine, rest = split(store.schema, terms)
    ks = store.keyscan
    b = ks.buf if ks is not None else None
    if mine and b is not None and not b.usable and ks._fresh(store, b):
        return [], list(terms)
    return mine, rest


class Buffer:
    """The keys of slots [0, n) of one ``rows`` list as lines; see the module docstring."""

    __slots__ = ("rows", "n", "gen", "reused_at", "usable", "data", "starts", "_views", "_hist")

    def __init__(self, rows, n, gen, reused_at, data, starts):
        self.rows = rows              # the heap's list it was built from (identity)
        self.n = n
        self.gen = gen
        self.reused_at = reused_at    # KeyScan.n_reused at the build
        self.usable = data is not None
        self.data = data
        self.starts = starts
        self._views = {}              # lower (bool) -> (bytes, uint8 array)
        self._hist = {}               # lower (bool) -> byte histogram

    def view(self, lower: bool):
        """(bytes, uint8 array) of the buffer, lower-cased (ASCII) when ``lower``;
        the copy is made once.  Readers may race to make it: both are equal."""
        v = self._views.get(lower)
        if v is None:
            data = self.data.lower() if lower else self.data
            v = self._views[lower] = (data, np.frombuffer(data, np.uint8))
        return v

    def hist(self, lower: bool) -> np.ndarray:
        """How often each byte occurs (picks the rarest byte of a literal).  O(len) once."""
        h = self._hist.get(lower)
        if h is None:
            h = self._hist[lower] = np.bincount(self.view(lower)[1], minlength=256)
        return h

    def nbytes(self) -> int:
        """Bytes held: the buffer, its offsets and the copies made so far."""
        if not self.usable:
            return 0
        extra = sum(len(d) for low, (d, _a) in self._views.items() if low)
        return len(self.data) + self.starts.nbytes + extra

    # -- one term --------------------------------------------------------------
    def term_hits(self, pattern: str, nocase: bool) -> np.ndarray:
        """Bool array over the n lines: the line matches glob ``pattern`` (ASCII),
        with the semantics of query.glob_to_regex on each key.  O(len(data)) in C,
        plus O(candidate lines) regex calls when the pattern is not a plain
        literal with stars at its ends."""
        n = self.n
        tokens, _ranges = glob_tokens(pattern, nocase)
        out = np.zeros(n, bool)
        if any(k == "never" or (k == "lit" and v == "\n") for k, v in tokens):
            return out                # matches no key (no key holds a LF)
        # lower-cased text equals case-insensitive matching on ASCII; needed only
        # when the pattern holds a letter or a set
        lower = nocase and any(k == "set" or (k == "lit" and v.isalpha()) for k, v in tokens)
        data, b = self.view(lower)
        starts = self.starts
        lead = bool(tokens) and tokens[0][0] == "star"
        trail = len(tokens) > int(lead) and tokens[-1][0] == "star"
        core = tokens[int(lead):len(tokens) - int(trail)]
        if not core:
            if tokens:
                out[:] = True                          # "*": every key
            else:
                out[:] = starts[1:] - 1 == starts[:-1]     # "": only an empty line
            return out
        if all(k == "any" or k == "star" for k, _v in core):
            # only ? and *: a length
            size = starts[1:] - 1 - starts[:-1]
            want = sum(1 for k, _v in tokens if k == "any")
            out[:] = size >= want if lead or trail or any(k == "star" for k, _v in core) else size == want
            return out
        if all(k == "lit" for k, _v in core):
            lit = "".join(v for _k, v in core).encode("ascii")
            pos = self._find(b, lit, lower, prefix=not lead, suffix=not trail)
            out[self.lines(pos)] = True
            return out
        body = b"".join(_piece(k, v) for k, v in tokens)
        run = _longest_run(core)
        if run and (len(run) > 1 or self.hist(lower)[ord(run)] * 16 < n):
            pos = self._find(b, run.encode("ascii"), lower, False, False)
            if len(pos) * 16 < n:           # else one regex over the buffer costs less
                mark = np.zeros(n, bool)
                mark[self.lines(pos)] = True
                cand = np.flatnonzero(mark)
                fm = re.compile(body).fullmatch
                a = starts[cand].tolist()
                e = (starts[cand + 1] - 1).tolist()
                ok = np.fromiter((fm(data, x, y) is not None for x, y in zip(a, e)), bool, len(cand))
                out[cand[ok]] = True
                return out
        rx = re.compile(b"\n(?:" + body + b")(?=\n)")
        pos = np.fromiter((m.start() for m in rx.finditer(data)), np.int64)
        out[self.lines(pos + 1)] = True
        return out

    def lines(self, pos: np.ndarray) -> np.ndarray:
        """The line (slot) of each offset in ``pos``.  O(len(pos) log n)."""
        starts = self.starts
        return np.searchsorted(starts, pos.astype(starts.dtype, copy=False), "right") - 1

    def _find(self, b, lit: bytes, lower: bool, prefix: bool, suffix: bool) -> np.ndarray:
        """Offsets in ``b`` where ``lit`` (no LF) occurs; ``prefix``/``suffix``: only
        at a line's start/end.  The rarest byte of ``lit`` first (one pass over
        ``b``; with the second rarest when the rarest is common, so that few
        offsets come out), then a gather per other byte over the candidates."""
        h = self.hist(lower)
        L = len(lit)
        N = len(b)
        order = sorted(range(L), key=lambda k: h[lit[k]])
        r = order[0]
        if L > 1 and h[lit[r]] * 64 > N:
            span = N - L                    # starts p with p + L < N
            r2 = order[1]
            m = b[r:r + span] == lit[r]
            m &= b[r2:r2 + span] == lit[r2]
            pos = np.flatnonzero(m)
            rest = order[2:]
        else:
            pos = np.flatnonzero(b == lit[r])
            if r:
                pos = pos[pos >= r] - r
            pos = pos[pos + L < N]
            rest = order[1:]
        for k in rest:
            if len(pos):
                pos = pos[b[pos + k] == lit[k]]
        if prefix and len(pos):
            pos = pos[b[pos - 1] == _NL]
        if suffix and len(pos):
            pos = pos[b[pos + L] == _NL]
        return pos


def _piece(kind, v) -> bytes:
    """A token (query.glob_tokens) as a piece of a bytes regex that never matches
    the LF between lines (a set whose range spans LF gets a lookahead: slower)."""
    if kind == "lit":
        return re.escape(v).encode("ascii")
    if kind == "set":
        cls = v.encode("ascii")
        return b"(?!\n)" + cls if re.match(cls, b"\n") else cls
    return _PIECE[kind]


def _longest_run(tokens) -> str:
    """The longest run of literal characters among ``tokens``, or ""."""
    best = cur = ""
    for k, v in tokens:
        if k == "lit":
            cur += v
            if len(cur) > len(best):
                best = cur
        else:
            cur = ""
    return best


class KeyScan:
    """One table's key buffer and the stamps that say which of its lines are stale.

    ``store.keyscan`` (heap.py) once a query made one (``keyscan_of``);
    ``reused`` is the writers' one call.
    """

    def __init__(self):
        self.gen = 0                       # stamps written now; bumped by each build
        self.stamps = np.zeros(0, np.uint32)
        self.n_reused = 0                  # slots stamped, ever (for the rebuild rule)
        self.buf: Buffer | None = None
        self._building = threading.Lock()

    # -- writers (exclusive latch) ------------------------------------------------
    def reused(self, slots: list) -> None:
        """``slots`` (freed earlier) now hold other keys.  O(len(slots)); the stamp
        array doubles when a slot past it is stamped (amortised O(1) a slot)."""
        if not slots:
            return
        st = self.stamps
        hi = max(slots)
        if hi >= len(st):
            new = np.zeros(max(hi + 1, 2 * len(st), 1024), np.uint32)
            new[:len(st)] = st
            self.stamps = st = new      # one reference: a reader sees the old or the new
        if len(slots) == 1:
            st[slots[0]] = self.gen
        else:
            st[slots] = self.gen
        self.n_reused += len(slots)

    # -- readers ---------------------------------------------------------------------
    def buffer(self, store) -> Buffer:
        """A buffer for ``store``'s heap: the current one, or a new one when the heap
        was replaced or too many of its slots are unsure.  O(1), or a build."""
        b = self.buf
        if b is None or not self._fresh(store, b):
            with self._building:
                b = self.buf
                if b is None or not self._fresh(store, b):
                    b = self.buf = self._build(store)
        return b

    def _fresh(self, store, b: Buffer) -> bool:
        unsure = len(store.rows) - b.n + self.n_reused - b.reused_at
        return b.rows is store.rows and unsure <= max(_STALE_MIN, b.n >> 4)

    def _build(self, store) -> Buffer:
        """The keys of every slot, read after a generation bump taken where no writer
        section runs.  O(n) in C (a Python pass when some slots hold chains)."""
        with store.latch.shared:
            gen = self.gen
            self.gen = gen + 1
            rows = store.rows
            n = len(rows)
            reused_at = self.n_reused
        kp = store.key_pos
        keys = rows[:n]                 # a settled slot holds its key (heap.py)
        keys.append("")
        keys.insert(0, "")
        try:
            text = "\n".join(keys)
        except TypeError:               # some slots hold chains or are free
            text = "\n".join([h if h.__class__ is str else ("" if h is None else h.values[kp])
                              for h in keys])
        del keys
        if not text.isascii():
            return Buffer(rows, n, gen, reused_at, None, None)
        data = text.encode("ascii")
        del text
        nl = np.flatnonzero(np.frombuffer(data, np.uint8) == _NL)
        if len(nl) != n + 1:            # a key with a LF: schema.py forbids it
            return Buffer(rows, n, gen, reused_at, None, None)
        starts = nl + 1
        if len(data) < 1 << 31:
            starts = starts.astype(np.int32)
        return Buffer(rows, n, gen, reused_at, data, starts)

    def nbytes(self) -> int:
        """Bytes held: the current buffer and the stamps."""
        b = self.buf
        return self.stamps.nbytes + (b.nbytes() if b is not None else 0)

    def _check(self, store) -> None:
        """Assert the contract (tests): every line of the current buffer that is not
        unsure is the key of its slot, or the slot is free.  O(n)."""
        b = self.buf
        if b is None or not b.usable or b.rows is not store.rows:
            return
        kp = store.key_pos
        st = self.stamps
        data, starts = b.data, b.starts
        assert len(starts) == b.n + 1 and starts[-1] == len(data)
        with store.latch.shared:
            rows = store.rows
            for i in range(b.n):
                if i < len(st) and st[i] > b.gen:
                    continue
                h = rows[i]
                if h is None:
                    continue
                key = h if h.__class__ is str else h.values[kp]
                line = data[starts[i]:starts[i + 1] - 1].decode("ascii")
                assert line == key, f"slot {i}: line {line!r}, key {key!r}"


def keyscan_of(store) -> KeyScan:
    """``store.keyscan``, made on first use; set where no writer section runs, so
    writers stamp every reuse from their next section on."""
    ks = store.keyscan
    if ks is None:
        with _new_lock:
            ks = store.keyscan
            if ks is None:
                ks = KeyScan()
                with store.latch.shared:
                    store.keyscan = ks
    return ks


class KeyHits:
    """The answer of a query's key match terms over one buffer (``hits``)."""

    __slots__ = ("ks", "buf", "hit", "rest", "terms")

    def __init__(self, ks, buf, hit, terms, rest):
        self.ks = ks
        self.buf = buf
        self.hit = hit        # bool per line: every key term holds on the line
        self.terms = terms    # the terms answered
        self.rest = rest      # the terms left for the predicate

    def narrow(self, m: np.ndarray, chain: np.ndarray, a: int, b: int) -> None:
        """Narrow the column marks of slots [a, b) in place, after they were read:
        ``m`` (settled and matching) keeps the slots whose line matches and is not
        unsure; unsure slots of ``m`` join ``chain`` (read at the snapshot,
        checked against the whole predicate).  O(b - a) in numpy."""
        buf = self.buf
        e = min(b, buf.n)
        k = e - a
        if k > 0:
            st = self.ks.stamps[a:e]       # captured after the marks (module docstring)
            mm = m[:k]
            if len(st):
                u = st > buf.gen
                if len(st) < k:
                    u = np.concatenate((u, np.zeros(k - len(st), bool)))
                if u.any():
                    chain[:k] |= mm & u
                    mm &= ~u
            mm &= self.hit[a:e]
        j = max(k, 0)
        if j < b - a:                      # allocated since the build
            chain[j:] |= m[j:]
            m[j:] = False


def hits(store, terms) -> KeyHits | None:
    """The key match terms of ``terms`` (``split``) answered over ``store``'s key
    buffer (built or rebuilt as needed), or None: no such term, or no usable
    buffer (a non-ASCII key).  O(buffer) in C per term."""
    mine, rest = split(store.schema, terms)
    if not mine:
        return None
    ks = keyscan_of(store)
    buf = ks.buffer(store)
    if not buf.usable:
        return None
    hit = None
    for t in mine:
        nocase = t.op in ("match", "notmatch")
        h = buf.term_hits(t.values[1], nocase)
        if t.op.startswith("not"):
            h = ~h
        hit = h if hit is None else (hit & h)
    return KeyHits(ks, buf, hit, mine, rest)
