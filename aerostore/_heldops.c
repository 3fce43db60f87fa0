/* _heldops.c: the aerostore._heldops extension: what arrayindex.py does to an
 * index's sorted entry arrays in the two places where the GIL matters most,
 * done without giving it up: the reads a query makes (bisect, split, slots)
 * and the writes a feed's batch makes inside its writer section (sort, onto);
 * the intersection of a query's slot sets, which gives it up once instead
 * of numpy's several times (intersect); and a fold of an index's layers
 * into its main array, which gives it up for the whole merge (fold).
 *
 * Why: numpy releases the GIL around every searchsorted and sort, however
 * short, and around a ufunc or a cast over more than 500 elements.  A thread
 * that gives the GIL up while another thread is ready to run gets it back
 * only when that thread next yields: up to the switch interval later
 * (aerostore/switching.py, 0.5 ms).
 * - A reader's query bisects each index layer a few times and splits chunks
 *   of 1,024 entries, so under a feed it waited for the GIL several times a
 *   query for work of microseconds (with one busy Python thread beside it: a
 *   search took 1 us alone, 26 us on average; a 2,000-element ufunc 2 us
 *   alone, 32 us).
 * - A writer's section (install, prune) holds the table latch, so every
 *   query waits for it at its gate; its numpy calls on the batch layer let
 *   other threads in a dozen times, and with one busy thread beside it a
 *   100-row install took 2.4 ms (p50; 0.46 ms alone), a prune 2.3 ms.
 * These keep the GIL: a query waits for it once, when it starts, and a
 * section runs through.  Each is O(n) or O(n log n) of plain C over what a
 * query or a batch touches (a chunk, a range's slots, the batch layer's
 * runs, at most 1/32 of the index): microseconds, tens at most.
 *
 * The arrays are what arrayindex.py stores (entries.py's packed entries
 * ``key << 32 | slot``): 1-D, C-contiguous, of int64 or uint64 (a narrow
 * entry: the packed int) or complex128 (a wide entry: real part ``e >> 43``,
 * imaginary part ``e & (2**43 - 1)``, ordered by real part, then imaginary
 * part, as numpy orders complex numbers).  Any other array raises TypeError;
 * the caller checked that a key fits the dtype. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The array's element type from its buffer format: 'i' int64, 'u' uint64,
 * 'c' complex128, 0 anything else. */
static char
kind_of(const Py_buffer *view)
{
    const char *f = view->format;

    if (f == NULL || view->ndim != 1) {
        return 0;
    }
    if (*f == '<' || *f == '=' || *f == '@') {
        f++;
    }
    if (view->itemsize == 8 && f[1] == '\0') {
        if (f[0] == 'l' || f[0] == 'q') {
            return 'i';
        }
        if (f[0] == 'L' || f[0] == 'Q') {
            return 'u';
        }
    }
    if (view->itemsize == 16 && f[0] == 'Z' && f[1] == 'd' && f[2] == '\0') {
        return 'c';
    }
    return 0;
}

#define SLOT_MASK 0xFFFFFFFFull

/* One entry's key (as the int64 or uint64 the key dtype holds) and slot. */
static inline void
wide_parts(const double *a, Py_ssize_t i, uint64_t *key, uint64_t *slot)
{
    int64_t hi = (int64_t)a[2 * i];              /* exact: |hi| <= 2**53 */
    int64_t lo = (int64_t)a[2 * i + 1];          /* 0 <= lo < 2**43 */
    *key = ((uint64_t)hi << 11) | ((uint64_t)lo >> 32);
    *slot = (uint64_t)lo & SLOT_MASK;
}

/* Borrow arr's buffer as an entry array; its kind ('i', 'u', 'c') or 0 with an
 * exception set (the buffer is then released). */
static char
entries_of(PyObject *arr, Py_buffer *view, const char *who)
{
    char kind;

    if (PyObject_GetBuffer(arr, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        return 0;
    }
    kind = kind_of(view);
    if (kind == 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s: a 1-D int64, uint64 or complex128 array is needed, not format '%s'",
                     who, view->format ? view->format : "?");
        PyBuffer_Release(view);
    }
    return kind;
}

/* Borrow out's buffer as a writable int64 array of n elements; 0 with an
 * exception set (released) if it is not one. */
static int
int64_out(PyObject *out, Py_buffer *view, Py_ssize_t n, const char *who)
{
    if (PyObject_GetBuffer(out, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        return 0;
    }
    if (kind_of(view) != 'i' || view->shape[0] != n) {
        PyErr_Format(PyExc_TypeError, "%s: out must be a writable int64 array of %zd elements", who, n);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

/* Borrow the buffers of the n arrays args[0..n-1] as entry arrays of one kind
 * (views[i]; with writable_last, the last one writable); that kind, or 0 with
 * an exception set and every buffer released. */
static char
entries_all(PyObject *const *args, int n, Py_buffer *views, int writable_last, const char *who)
{
    char kind = 0;
    int i, j;

    for (i = 0; i < n; i++) {
        char k;
        if (writable_last && i == n - 1) {
            if (PyObject_GetBuffer(args[i], &views[i],
                                   PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
                break;
            }
            k = kind_of(&views[i]);
        } else {
            k = entries_of(args[i], &views[i], who);
            if (k == 0) {
                break;
            }
        }
        if (i > 0 && k != kind) {
            PyErr_Format(PyExc_TypeError, "%s: the arrays must have one dtype", who);
            PyBuffer_Release(&views[i]);
            break;
        }
        kind = k;
    }
    if (i == n) {
        return kind;
    }
    for (j = 0; j < i; j++) {
        PyBuffer_Release(&views[j]);
    }
    return 0;
}

/* Order of entries i of a and j of b, both of kind: <0, 0, >0. */
static inline int
entry_cmp(char kind, const void *a, Py_ssize_t i, const void *b, Py_ssize_t j)
{
    if (kind == 'i') {
        int64_t x = ((const int64_t *)a)[i], y = ((const int64_t *)b)[j];
        return (x > y) - (x < y);
    }
    if (kind == 'u') {
        uint64_t x = ((const uint64_t *)a)[i], y = ((const uint64_t *)b)[j];
        return (x > y) - (x < y);
    }
    {
        const double *x = (const double *)a + 2 * i, *y = (const double *)b + 2 * j;
        if (x[0] != y[0]) {
            return x[0] < y[0] ? -1 : 1;
        }
        return (x[1] > y[1]) - (x[1] < y[1]);
    }
}

static int cmp_i(const void *a, const void *b) { return entry_cmp('i', a, 0, b, 0); }
static int cmp_u(const void *a, const void *b) { return entry_cmp('u', a, 0, b, 0); }
static int cmp_c(const void *a, const void *b) { return entry_cmp('c', a, 0, b, 0); }

PyDoc_STRVAR(bisect_doc,
"bisect(arr, key, right) -> int\n\n"
"Position of ``key`` in the sorted 1-D array ``arr`` (int64, uint64 or complex128),\n"
"as ``arr.searchsorted(key, 'right' if right else 'left')``, holding the GIL.\n"
"``key``: an int that fits the dtype, or a complex for complex128.\n"
"Raises TypeError for another array or key, OverflowError for a key past the dtype.");

static PyObject *
hs_bisect(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t n, lo, hi, pos;
    union { int64_t i; uint64_t u; double c[2]; } key;
    int right;
    char kind;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "bisect(arr, key, right) takes 3 arguments");
        return NULL;
    }
    right = PyObject_IsTrue(args[2]);
    if (right < 0) {
        return NULL;
    }
    kind = entries_of(args[0], &view, "bisect");
    if (kind == 0) {
        return NULL;
    }
    n = view.shape[0];
    key.c[0] = key.c[1] = 0.0;
    if (kind == 'i') {
        key.i = PyLong_AsLongLong(args[1]);
    } else if (kind == 'u') {
        key.u = PyLong_AsUnsignedLongLong(args[1]);
    } else if (PyComplex_Check(args[1])) {
        key.c[0] = PyComplex_RealAsDouble(args[1]);
        key.c[1] = PyComplex_ImagAsDouble(args[1]);
    } else {
        PyErr_SetString(PyExc_TypeError, "bisect: a complex128 array takes a complex key");
    }
    if (PyErr_Occurred()) {
        goto fail;
    }
    lo = 0;
    hi = n;
    while (lo < hi) {               /* the first entry >= key (right: > key) */
        Py_ssize_t mid = lo + ((hi - lo) >> 1);
        int c = entry_cmp(kind, view.buf, mid, &key, 0);
        if (c < 0 || (right && c == 0)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    pos = lo;
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(pos);

fail:
    PyBuffer_Release(&view);
    return NULL;
}


PyDoc_STRVAR(slots_doc,
"slots(arr, out) -> out\n\n"
"The slot of each entry of ``arr`` written into ``out`` (an int64 array of the\n"
"same length, from np.empty), holding the GIL.  O(n).\n"
"Raises TypeError for another array.");

static PyObject *
hs_slots(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view, ov;
    Py_ssize_t n, i;
    int64_t *o;
    char kind;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "slots(arr, out) takes 2 arguments");
        return NULL;
    }
    kind = entries_of(args[0], &view, "slots");
    if (kind == 0) {
        return NULL;
    }
    n = view.shape[0];
    if (!int64_out(args[1], &ov, n, "slots")) {
        PyBuffer_Release(&view);
        return NULL;
    }
    o = (int64_t *)ov.buf;
    if (kind == 'c') {
        const double *a = (const double *)view.buf;
        for (i = 0; i < n; i++) {
            o[i] = (int64_t)((uint64_t)(int64_t)a[2 * i + 1] & SLOT_MASK);
        }
    } else {
        const uint64_t *a = (const uint64_t *)view.buf;     /* the low bits alike for both */
        for (i = 0; i < n; i++) {
            o[i] = (int64_t)(a[i] & SLOT_MASK);
        }
    }
    PyBuffer_Release(&ov);
    PyBuffer_Release(&view);
    Py_INCREF(args[1]);
    return args[1];
}

PyDoc_STRVAR(split_doc,
"split(arr, unsigned_keys, out) -> (keys, slots)\n\n"
"Each entry of ``arr`` split into its key and slot: ``keys`` and ``slots`` are\n"
"lists of ints in the array's order, and the slots are also written into\n"
"``out`` (an int64 array of the same length).  A key is the entry's top bits\n"
"as the index's key dtype: unsigned (uint64) when ``unsigned_keys``, else\n"
"signed (int64).  Holds the GIL.  O(n).\n"
"Raises TypeError for another array, MemoryError.");

static PyObject *
hs_split(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view, ov;
    Py_ssize_t n, i;
    PyObject *keys = NULL, *slots = NULL, *k, *sl, *res;
    int64_t *o;
    int unsigned_keys;
    char kind;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "split(arr, unsigned_keys, out) takes 3 arguments");
        return NULL;
    }
    unsigned_keys = PyObject_IsTrue(args[1]);
    if (unsigned_keys < 0) {
        return NULL;
    }
    kind = entries_of(args[0], &view, "split");
    if (kind == 0) {
        return NULL;
    }
    n = view.shape[0];
    if (!int64_out(args[2], &ov, n, "split")) {
        PyBuffer_Release(&view);
        return NULL;
    }
    o = (int64_t *)ov.buf;
    keys = PyList_New(n);
    slots = PyList_New(n);
    if (keys == NULL || slots == NULL) {
        goto fail;
    }
    for (i = 0; i < n; i++) {
        uint64_t key, slot;
        if (kind == 'c') {
            wide_parts((const double *)view.buf, i, &key, &slot);
            k = unsigned_keys ? PyLong_FromUnsignedLongLong(key) : PyLong_FromLongLong((int64_t)key);
        } else {
            uint64_t e = ((const uint64_t *)view.buf)[i];
            slot = e & SLOT_MASK;
            /* the key: e >> 32, arithmetic for int64 (a negative key stays negative) */
            k = kind == 'i' ? PyLong_FromLongLong(((int64_t)e - (int64_t)slot) / ((int64_t)1 << 32))
                            : PyLong_FromUnsignedLongLong(e >> 32);
        }
        sl = PyLong_FromUnsignedLongLong(slot);
        if (k == NULL || sl == NULL) {
            Py_XDECREF(k);
            Py_XDECREF(sl);
            goto fail;
        }
        PyList_SET_ITEM(keys, i, k);
        PyList_SET_ITEM(slots, i, sl);
        o[i] = (int64_t)slot;
    }
    PyBuffer_Release(&ov);
    PyBuffer_Release(&view);
    res = PyTuple_Pack(2, keys, slots);
    Py_DECREF(keys);
    Py_DECREF(slots);
    return res;

fail:
    Py_XDECREF(keys);
    Py_XDECREF(slots);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&view);
    return NULL;
}

/* -- the batch layer's writes (arrayindex.py's _batch_write and _onto) ---------- */
PyDoc_STRVAR(sort_doc,
"sort(arr) -> None\n\n"
"Sort the entry array ``arr`` (writable, 1-D, int64, uint64 or complex128) in\n"
"place, in numpy's order, holding the GIL.  O(n log n).\n"
"Raises TypeError for another array, BufferError for a read-only one.");

static PyObject *
hs_sort(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    char kind;

    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "sort(arr) takes 1 argument");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    kind = kind_of(&view);
    if (kind == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "sort: a 1-D int64, uint64 or complex128 array is needed");
        return NULL;
    }
    qsort(view.buf, (size_t)view.shape[0], (size_t)view.itemsize,
          kind == 'i' ? cmp_i : kind == 'u' ? cmp_u : cmp_c);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(onto_doc,
"onto(cancel, keep, xs) -> (cancel2, keep2)\n\n"
"Sorted, unique entries ``xs`` applied to a layer's two arrays (sorted, unique,\n"
"all of one dtype: int64, uint64 or complex128): each entry of ``xs`` present\n"
"in ``cancel`` takes it out; the others join ``keep``.  An array that does\n"
"not change comes back as the same object; a changed one comes back as the\n"
"bytes of the new array (np.frombuffer).  Holds the GIL.\n"
"O(len(cancel) + len(keep) + len(xs)), copies in runs (memcpy).\n"
"Raises TypeError for other arrays or mixed dtypes.");

static PyObject *
hs_onto(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer v[3];
    char kind;
    Py_ssize_t nc, nk, nx, sz, i, j, hits = 0;
    PyObject *c_out = NULL, *k_out = NULL, *res = NULL;
    uint8_t *hit = NULL;
#define cv v[0]
#define kv v[1]
#define xv v[2]

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "onto(cancel, keep, xs) takes 3 arguments");
        return NULL;
    }
    kind = entries_all(args, 3, v, 0, "onto");
    if (kind == 0) {
        return NULL;
    }
    nc = cv.shape[0];
    nk = kv.shape[0];
    nx = xv.shape[0];
    sz = cv.itemsize;
    hit = PyMem_Malloc((size_t)(nx ? nx : 1));
    if (hit == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* which of xs are in cancel: one merge */
    for (i = 0, j = 0; i < nx; i++) {
        while (j < nc && entry_cmp(kind, cv.buf, j, xv.buf, i) < 0) {
            j++;
        }
        hit[i] = j < nc && entry_cmp(kind, cv.buf, j, xv.buf, i) == 0;
        hits += hit[i];
    }
    if (hits) {         /* cancel without the hits: the runs between them copied whole */
        char *out, *o;
        Py_ssize_t from = 0;
        c_out = PyBytes_FromStringAndSize(NULL, (nc - hits) * sz);
        if (c_out == NULL) {
            goto done;
        }
        o = out = PyBytes_AS_STRING(c_out);
        for (i = 0, j = 0; i < nx; i++) {
            if (!hit[i]) {
                continue;
            }
            while (entry_cmp(kind, cv.buf, j, xv.buf, i) < 0) {
                j++;
            }
            memcpy(o, (const char *)cv.buf + from * sz, (size_t)((j - from) * sz));
            o += (j - from) * sz;
            from = ++j;
        }
        memcpy(o, (const char *)cv.buf + from * sz, (size_t)((nc - from) * sz));
    } else {
        c_out = args[0];
        Py_INCREF(c_out);
    }
    if (hits < nx) {    /* keep with the misses merged in */
        char *o;
        Py_ssize_t from = 0;
        k_out = PyBytes_FromStringAndSize(NULL, (nk + nx - hits) * sz);
        if (k_out == NULL) {
            goto done;
        }
        o = PyBytes_AS_STRING(k_out);
        for (i = 0, j = 0; i < nx; i++) {
            if (hit[i]) {
                continue;
            }
            while (j < nk && entry_cmp(kind, kv.buf, j, xv.buf, i) < 0) {
                j++;
            }
            memcpy(o, (const char *)kv.buf + from * sz, (size_t)((j - from) * sz));
            o += (j - from) * sz;
            memcpy(o, (const char *)xv.buf + i * sz, (size_t)sz);
            o += sz;
            from = j;
        }
        memcpy(o, (const char *)kv.buf + from * sz, (size_t)((nk - from) * sz));
    } else {
        k_out = args[1];
        Py_INCREF(k_out);
    }
    res = PyTuple_Pack(2, c_out, k_out);

done:
    Py_XDECREF(c_out);
    Py_XDECREF(k_out);
    PyMem_Free(hit);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&kv);
    PyBuffer_Release(&cv);
    return res;
#undef cv
#undef kv
#undef xv
}


/* -- the slot sets of several ranges met (planner.py's Intersect) ------------- */

#define INTERSECT_FREE_GIL 16384    /* slots in the parts past which the GIL is let go */

PyDoc_STRVAR(intersect_doc,
"intersect(parts, mark) -> bytes\n\n"
"The slots that every part holds, ascending and each once, as the bytes of an\n"
"int64 array (np.frombuffer).  ``parts``: a list (1 to 250) of lists of int64\n"
"slot arrays (one list per indexed field: its ranges' slots, repeats allowed);\n"
"``mark``: a writable uint8 array of zeros longer than any slot, the calling\n"
"thread's own, left all zeros.  O(slots in the parts + k log k) for the k\n"
"slots kept.\n\n"
"Unlike this module's other functions it gives the GIL up once, for the\n"
"whole work, when the parts hold more than 16,384 slots (a lat/lon box at 1M\n"
"rows holds about 40k: 0.1 ms of C that other threads may use meanwhile),\n"
"instead of numpy's several times.\n"
"Raises TypeError for other arguments, IndexError for a slot past ``mark``.");

static PyObject *
hs_intersect(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *parts, *res = NULL;
    Py_buffer mv, *bufs = NULL;
    Py_ssize_t k, p, i, nb = 0, got = 0, total = 0, nmark, nout = 0, cap = 0, *part_end = NULL;
    int64_t *out = NULL, bad = -1;
    uint8_t *mark;

    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "intersect(parts, mark): parts is a list of lists of arrays");
        return NULL;
    }
    parts = args[0];
    k = PyList_GET_SIZE(parts);
    if (k < 1 || k > 250) {
        PyErr_SetString(PyExc_TypeError, "intersect: between 1 and 250 parts");
        return NULL;
    }
    for (p = 0; p < k; p++) {
        if (!PyList_Check(PyList_GET_ITEM(parts, p))) {
            PyErr_SetString(PyExc_TypeError, "intersect: each part is a list of arrays");
            return NULL;
        }
        nb += PyList_GET_SIZE(PyList_GET_ITEM(parts, p));
    }
    if (PyObject_GetBuffer(args[1], &mv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (mv.ndim != 1 || mv.itemsize != 1 || mv.format == NULL || strcmp(mv.format, "B") != 0) {
        PyBuffer_Release(&mv);
        PyErr_SetString(PyExc_TypeError, "intersect: mark must be a writable uint8 array");
        return NULL;
    }
    mark = (uint8_t *)mv.buf;
    nmark = mv.shape[0];
    bufs = PyMem_Calloc((size_t)(nb ? nb : 1), sizeof(Py_buffer));
    part_end = PyMem_Calloc((size_t)k, sizeof(Py_ssize_t));
    if (bufs == NULL || part_end == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* every array borrowed first (they stay alive and unchanged while borrowed) */
    for (p = 0; p < k; p++) {
        PyObject *part = PyList_GET_ITEM(parts, p);
        for (i = 0; i < PyList_GET_SIZE(part); i++) {
            if (PyObject_GetBuffer(PyList_GET_ITEM(part, i), &bufs[got], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
                goto done;
            }
            got++;
            if (kind_of(&bufs[got - 1]) != 'i') {
                PyErr_SetString(PyExc_TypeError, "intersect: slots must be int64 arrays");
                goto done;
            }
            total += bufs[got - 1].shape[0];
            if (p == k - 1) {
                cap += bufs[got - 1].shape[0];
            }
        }
        part_end[p] = got;
    }
    out = PyMem_RawMalloc((size_t)(cap ? cap : 1) * sizeof(int64_t));
    if (out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    {
        PyThreadState *ts = total > INTERSECT_FREE_GIL ? PyEval_SaveThread() : NULL;
        Py_ssize_t b = 0, j;
        /* mark[s] == p once the first p parts hold s: each part moves its slots on
         * by one, once (a repeat finds p + 1); then the last part's slots marked k
         * are kept, each once (marked k + 1) */
        for (p = 0; p < k && bad < 0; p++) {
            uint8_t want = (uint8_t)p;
            for (; b < part_end[p] && bad < 0; b++) {
                const int64_t *a = (const int64_t *)bufs[b].buf;
                Py_ssize_t n = bufs[b].shape[0];
                for (j = 0; j < n; j++) {
                    int64_t s = a[j];
                    if (s < 0 || s >= nmark) {
                        bad = s < 0 ? INT64_MAX : s;
                        break;
                    }
                    if (mark[s] == want) {
                        mark[s] = (uint8_t)(want + 1);
                    }
                }
            }
        }
        if (bad < 0) {
            for (b = k > 1 ? part_end[k - 2] : 0; b < part_end[k - 1]; b++) {
                const int64_t *a = (const int64_t *)bufs[b].buf;
                for (j = 0; j < bufs[b].shape[0]; j++) {
                    if (mark[a[j]] == (uint8_t)k) {
                        mark[a[j]] = (uint8_t)(k + 1);
                        out[nout++] = a[j];
                    }
                }
            }
            qsort(out, (size_t)nout, sizeof(int64_t), cmp_i);
            for (b = 0; b < got; b++) {         /* the marks cleared again */
                const int64_t *a = (const int64_t *)bufs[b].buf;
                for (j = 0; j < bufs[b].shape[0]; j++) {
                    mark[a[j]] = 0;
                }
            }
        } else {
            memset(mark, 0, (size_t)nmark);
        }
        if (ts != NULL) {
            PyEval_RestoreThread(ts);
        }
    }
    if (bad >= 0) {
        PyErr_Format(PyExc_IndexError, "intersect: slot %lld outside the mark buffer of %zd",
                     bad == INT64_MAX ? -1LL : (long long)bad, nmark);
        goto done;
    }
    res = PyBytes_FromStringAndSize((const char *)out, nout * (Py_ssize_t)sizeof(int64_t));

done:
    for (i = 0; i < got; i++) {
        PyBuffer_Release(&bufs[i]);
    }
    PyMem_Free(bufs);
    PyMem_Free(part_end);
    PyMem_RawFree(out);
    PyBuffer_Release(&mv);
    return res;
}


/* -- a fold: main's entries with a batch layer applied (arrayindex.py) ------- */

#define FOLD_FREE_GIL 65536     /* entries of main past which the GIL is let go */

/* The first position p in [lo, n) of the sorted entries a whose entry is >= the
 * entry x[i] (n if none): a galloping search from lo, so a run of k entries
 * costs O(log k) compares, not O(log n). */
static Py_ssize_t
gallop(char kind, const void *a, Py_ssize_t lo, Py_ssize_t n, const void *x, Py_ssize_t i)
{
    Py_ssize_t step = 1, hi;

    if (lo >= n || entry_cmp(kind, a, lo, x, i) >= 0) {
        return lo;
    }
    /* a[lo] < x: widen until a[lo + step] >= x or the end */
    while (lo + step < n && entry_cmp(kind, a, lo + step, x, i) < 0) {
        lo += step;
        step <<= 1;
    }
    hi = lo + step < n ? lo + step : n;     /* a[lo] < x <= a[hi] (or hi == n) */
    lo++;
    while (lo < hi) {
        Py_ssize_t mid = lo + ((hi - lo) >> 1);
        if (entry_cmp(kind, a, mid, x, i) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

PyDoc_STRVAR(fold_doc,
"fold(main, adds, removes, out) -> out\n\n"
"``main`` without the entries ``removes`` and with the entries ``adds``, written\n"
"into ``out`` in order.  All four are 1-D arrays of one dtype (int64, uint64 or\n"
"complex128); ``main``, ``adds`` and ``removes`` are sorted and unique, every\n"
"entry of ``removes`` is in ``main`` and none of ``adds`` is; ``out`` is\n"
"writable and holds exactly len(main) - len(removes) + len(adds) entries.\n"
"O(len(main)) in memcpy runs, plus O(k log(n/k)) compares for the k entries\n"
"of the layer (a galloping search from each to the next).\n\n"
"It gives the GIL up for the whole merge when ``main`` holds more than 65,536\n"
"entries: a fold of a 1M-entry index is a few ms of C that other threads may\n"
"use meanwhile.  The caller guarantees that no thread writes the arrays\n"
"meanwhile (arrayindex.py never writes an array once made, and ``out`` is\n"
"the caller's own).\n"
"Raises TypeError for other arrays, mixed dtypes or an ``out`` of the wrong\n"
"length, ValueError when an entry of ``removes`` is not in ``main`` or one of\n"
"``adds`` is (``out`` is then partly written).");

static PyObject *
hs_fold(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer v[4];
    char kind;
    Py_ssize_t n, na, nr, sz, pos = 0, o = 0, i = 0, j = 0;
    const char *m, *adds, *rems;
    char *out;
    int bad = 0;
    PyObject *res = NULL;
#define mv v[0]
#define av v[1]
#define rv v[2]
#define ov v[3]

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "fold(main, adds, removes, out) takes 4 arguments");
        return NULL;
    }
    kind = entries_all(args, 4, v, 1, "fold");
    if (kind == 0) {
        return NULL;
    }
    n = mv.shape[0];
    na = av.shape[0];
    nr = rv.shape[0];
    if (nr > n || ov.shape[0] != n - nr + na) {
        PyErr_Format(PyExc_TypeError, "fold: out has %zd entries, the fold makes %zd",
                     ov.shape[0], n - nr + na);
        goto done;
    }
    sz = mv.itemsize;
    m = (const char *)mv.buf;
    adds = (const char *)av.buf;
    rems = (const char *)rv.buf;
    out = (char *)ov.buf;
    {
        PyThreadState *ts = n > FOLD_FREE_GIL ? PyEval_SaveThread() : NULL;
        while (i < na || j < nr) {
            Py_ssize_t p;
            if (j < nr && (i >= na || entry_cmp(kind, rems, j, adds, i) < 0)) {
                p = gallop(kind, m, pos, n, rems, j);          /* a removed entry */
                if (p == n || entry_cmp(kind, m, p, rems, j) != 0) {
                    bad = 1;
                    break;
                }
                memcpy(out + o * sz, m + pos * sz, (size_t)((p - pos) * sz));
                o += p - pos;
                pos = p + 1;
                j++;
            } else {
                p = gallop(kind, m, pos, n, adds, i);          /* an added entry */
                if (p < n && entry_cmp(kind, m, p, adds, i) == 0) {
                    bad = 2;
                    break;
                }
                memcpy(out + o * sz, m + pos * sz, (size_t)((p - pos) * sz));
                o += p - pos;
                pos = p;
                memcpy(out + o * sz, adds + i * sz, (size_t)sz);
                o++;
                i++;
            }
        }
        if (!bad) {
            memcpy(out + o * sz, m + pos * sz, (size_t)((n - pos) * sz));
        }
        if (ts != NULL) {
            PyEval_RestoreThread(ts);
        }
    }
    if (bad == 1) {
        PyErr_SetString(PyExc_ValueError, "fold: a removed entry is not in main");
    } else if (bad == 2) {
        PyErr_SetString(PyExc_ValueError, "fold: an added entry is in main already");
    } else {
        res = args[3];
        Py_INCREF(res);
    }

done:
    PyBuffer_Release(&ov);
    PyBuffer_Release(&rv);
    PyBuffer_Release(&av);
    PyBuffer_Release(&mv);
    return res;
#undef mv
#undef av
#undef rv
#undef ov
}


static PyMethodDef hs_methods[] = {
    {"bisect", (PyCFunction)(void (*)(void))hs_bisect, METH_FASTCALL, bisect_doc},
    {"slots", (PyCFunction)(void (*)(void))hs_slots, METH_FASTCALL, slots_doc},
    {"split", (PyCFunction)(void (*)(void))hs_split, METH_FASTCALL, split_doc},
    {"sort", (PyCFunction)(void (*)(void))hs_sort, METH_FASTCALL, sort_doc},
    {"onto", (PyCFunction)(void (*)(void))hs_onto, METH_FASTCALL, onto_doc},
    {"intersect", (PyCFunction)(void (*)(void))hs_intersect, METH_FASTCALL, intersect_doc},
    {"fold", (PyCFunction)(void (*)(void))hs_fold, METH_FASTCALL, fold_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hs_module = {
    PyModuleDef_HEAD_INIT, "aerostore._heldops",
    "What arrayindex.py and planner.py do to sorted index entry arrays, without giving the GIL up "
    "for nothing (see _heldops.c).",
    -1, hs_methods,
};

PyMODINIT_FUNC
PyInit__heldops(void)
{
    return PyModule_Create(&hs_module);
}
