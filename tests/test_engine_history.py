"""Snapshot isolation checked on a real concurrent history.

Threads run random transactions on a few keys; every write stores a unique tag.
The publish hook records every commit in CSN order, so afterwards the committed
state at any CSN is known exactly.  Then, for every transaction:

- each read (get, an index range query, count) equals the committed state at
  its snapshot plus its own earlier writes;
- a committed transaction's keys were written by no other commit between its
  snapshot and its own commit (first committer wins);
- a transaction that got WriteConflict had a key written by a commit after its
  snapshot, and none of its writes appear in the history.
"""

import random
import threading
import time

import aerostore

KEYS = [f"k{i}" for i in range(10)]
THREADS = 4
TXNS_PER_THREAD = 250


@aerostore.table(indexes=("w",))
class Reg:
    k = aerostore.Key()
    tag = aerostore.Int()
    w = aerostore.Int()


def test_concurrent_history_is_snapshot_isolated(mem_db):
    t = mem_db.create_table(Reg)
    commits = []                       # (csn, {key: row or None}) in CSN order
    mem_db.add_publish_hook(lambda csn, changes: commits.append(
        (csn, {c[2]: c[4] for c in changes if c[0] == "Reg"})))
    logs = []
    errors = []
    tag_seq = iter(range(1, 10 ** 9))
    tag_lock = threading.Lock()

    def next_tag():
        with tag_lock:
            return next(tag_seq)

    def worker(seed):
        rng = random.Random(seed)
        try:
            for _ in range(TXNS_PER_THREAD):
                txn = mem_db.begin()
                tt = txn.table("Reg")
                log = {"snap": txn.snapshot, "reads": [], "writes": {}, "ranges": [], "counts": [],
                       "outcome": None}
                for _ in range(rng.randrange(1, 6)):
                    time.sleep(0)              # let the other threads interleave
                    x = rng.random()
                    k = rng.choice(KEYS)
                    if x < 0.4:
                        log["reads"].append((k, tt.get(k), dict(log["writes"])))
                    elif x < 0.55:
                        lo = rng.randrange(0, 8)
                        got = sorted(tt.query().range("w", lo, lo + 3).rows())
                        log["ranges"].append((lo, got, dict(log["writes"])))
                    elif x < 0.6:
                        log["counts"].append((tt.count(), dict(log["writes"])))
                    elif x < 0.9:
                        row = (k, next_tag(), rng.randrange(0, 10))
                        tt.upsert(row)
                        log["writes"][k] = row
                    else:
                        if tt.delete(k):
                            log["writes"][k] = None
                try:
                    txn.commit()
                    log["outcome"] = "commit"
                except aerostore.WriteConflict:
                    log["outcome"] = "conflict"
                logs.append(log)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[0]
    assert len(logs) == THREADS * TXNS_PER_THREAD

    # committed states by CSN
    assert [c for c, _ in commits] == sorted(c for c, _ in commits)
    states = []                        # (csn, state) after each commit
    state = {}
    for csn, ch in commits:
        for k, r in ch.items():
            if r is None:
                state.pop(k, None)
            else:
                state[k] = r
        states.append((csn, dict(state)))
    csns = [c for c, _ in states]

    def state_at(s):
        import bisect
        i = bisect.bisect_right(csns, s)
        return states[i - 1][1] if i else {}

    def with_own(base, own):
        st = dict(base)
        for k, r in own.items():
            if r is None:
                st.pop(k, None)
            else:
                st[k] = r
        return st

    tag_commit = {}                    # tag -> csn that committed it
    writers = {}                       # key -> list of csns that wrote it
    for csn, ch in commits:
        for k, r in ch.items():
            writers.setdefault(k, []).append(csn)
            if r is not None:
                tag_commit[r[1]] = csn

    n_conflicts = 0
    for log in logs:
        s = log["snap"]
        base = state_at(s)
        for k, got, own in log["reads"]:
            assert got == with_own(base, own).get(k), (log, k)
        for lo, got, own in log["ranges"]:
            view = with_own(base, own)
            assert got == sorted(r for r in view.values() if lo <= r[2] < lo + 3), log
        for n, own in log["counts"]:
            assert n == len(with_own(base, own)), log
        written_tags = [r[1] for r in log["writes"].values() if r is not None]
        if log["outcome"] == "commit":
            if not log["writes"]:
                continue
            cs = {tag_commit[tg] for tg in written_tags}
            if written_tags:
                assert len(cs) == 1, log                 # all its writes in one commit
                c = cs.pop()
                for k in log["writes"]:
                    assert not [w for w in writers.get(k, []) if s < w < c], (log, k)
        else:
            n_conflicts += 1
            assert not [tg for tg in written_tags if tg in tag_commit], log
            assert any(w > s for k in log["writes"] for w in writers.get(k, [])), log
    t._check()
    assert 0 < n_conflicts < len(logs), n_conflicts
