/* _readgate.h: the read gate, shared by the engine's extension (_readgate.c,
 * _keymap.c) and the Tcl shim (c_shim/rowget.c).  The contract is written in
 * aerostore/readgate.py; this is its memory layout and the reader's side.
 *
 * One gate per process.  Readers that hold no GIL (the shim's `FlightState
 * get`) read a settled row from a KeyMap and a table's columns while Python
 * threads write them.  Writers hold the GIL and call, from Python or from C:
 *
 *   hold()     before a section that writes column values, frees what a
 *              reader may be reading, or reallocates it: seq becomes odd,
 *              then the writer waits until no reader is inside (drain);
 *              nests (depth, changed only under the GIL);
 *   release()  at the end of the outermost such section: seq even again;
 *   changed()  after rebinding what readers start from (a table's columns
 *              republished, the store the shim reads replaced, a database
 *              closed): layout moves on, then drain;
 *   drain()    waits until no reader is inside (before freeing memory that a
 *              reader which started earlier may still be reading);
 *   keep(refs, layout)  (the shim, GIL held) keeps the objects its view of
 *              that layout reads alive until changed() lets them go.
 *
 * A reader (no GIL, never blocks while inside):
 *
 *   rg_enter(g)      readers += 1, then seq; odd: leave again (returns -1);
 *   ... reads, checking that its cached view's layout is g->layout ...
 *   rg_leave(g, s)   true if seq is still s (nothing was held meanwhile);
 *                    readers -= 1.
 *
 * The counters are C11-style atomics (GCC builtins), sequentially consistent
 * where the Dekker-style pairing needs it: a writer stores seq then loads
 * readers, a reader stores readers then loads seq, so at least one of them
 * sees the other.  Writers spin with sched_yield while draining: a reader is
 * inside for about a microsecond and takes no lock.
 */
#ifndef AEROSTORE_READGATE_H
#define AEROSTORE_READGATE_H

#include <stdint.h>

typedef struct ReadGate {
    uint64_t seq;           /* odd while a writer holds the gate */
    uint64_t layout;        /* moves on at each changed() */
    int64_t readers;        /* readers inside */
    long depth;             /* nested holds (GIL held: no atomics needed) */
    /* counters for stats() and tests (relaxed; a reader bumps its own kind) */
    uint64_t holds, drains_waited, answered, fell_back, waited;
} ReadGate;

static inline int64_t rg_enter(ReadGate *g)
{
    uint64_t s;

    __atomic_add_fetch(&g->readers, 1, __ATOMIC_SEQ_CST);
    s = __atomic_load_n(&g->seq, __ATOMIC_SEQ_CST);
    if (s & 1) {
        __atomic_sub_fetch(&g->readers, 1, __ATOMIC_RELEASE);
        return -1;
    }
    return (int64_t)s;
}

static inline int rg_leave(ReadGate *g, int64_t s)
{
    int same;

    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    same = __atomic_load_n(&g->seq, __ATOMIC_RELAXED) == (uint64_t)s;
    __atomic_sub_fetch(&g->readers, 1, __ATOMIC_RELEASE);
    return same;
}

static inline uint64_t rg_layout(ReadGate *g)
{
    return __atomic_load_n(&g->layout, __ATOMIC_ACQUIRE);
}

#endif
