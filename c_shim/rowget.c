/*
 * `FlightState get key`: the settled row read in C from the typed columns,
 * without running Python.
 *
 * The hottest command.  The general path calls session.t_get(key) and
 * Table.get in Python (two frames, and a tuple built from the columns).  Here,
 * with the GIL held and no Python code run, the shim reads what Table.get's
 * first lines and TableStore.row_at read (aerostore/database.py, heap.py) and
 * answers only when they decide:
 *
 *   the interp has no aerostore::transaction open (the session's _txn_table
 *   is None); a store is open (state.fast_get: the autocommit table's
 *   TableStore and Database, the key's position); the key is an exact str;
 *   database._closed is False; store.fseq is even (odd: a writer section
 *   that freezes or frees slots is running, and may be writing column values
 *   with the GIL released inside numpy: not handled here, as row_at does not
 *   trust such a read either); store.slots[key] is a slot; store.rows[slot]
 *   is an exact str equal to the key (a settled row: the latest version,
 *   visible to every snapshot, whose values are only in the columns); and
 *   store.columns.arrays[3], the row views (columns.py, Columns._publish),
 *   has the layout it documents, with the slot below every array's length
 *
 * -> the row built from the views, in field order, as a Tcl list: the key
 * field is the argument's own Tcl_Obj when that has the same bytes (ASCII
 * without NUL), else the key converted; a numeric field is its null flag and
 * its value read at the slot from the buffers of its two memoryviews
 * (float64; int64, uint64, int32, uint32, int16, uint16 as the field's range
 * needs; int8 for a bool; bool nulls; not released, one
 * dimension, contiguous: each view's format and item size are checked on
 * every call, a few compares); a str field, or an int too wide for 64 bits,
 * is its list's item.  Each value becomes the Tcl value convert.c makes of
 * the Python value Columns.row gives (shim_null_to_tcl, shim_double_to_tcl,
 * shim_u64_to_tcl, ...: one home for the text of each).
 *
 * Why an even fseq is enough: column values are written only inside such a
 * section (columns.py), which only Python code can enter, and none runs here
 * while the GIL is held; an install (a writer section that does not freeze)
 * may replace the arrays by bigger copies, but the views read here keep the
 * old ones alive and whole.  So the values read are the settled row's.
 *
 * In every other case (a miss, a version chain, a transaction, an int key, a
 * closed store, a freeze running, a store with no such attributes, another
 * layout) shim_get_row answers SHIM_NOT_HANDLED and the caller takes the
 * general path, which applies the whole rule.  tests/test_tcl_get.py checks
 * which path answers and that both agree, for every kind of value.
 *
 * shim_get_nogil answers the same rows first, without the GIL (for `get`,
 * `array_get`, `array_get_with_nulls` and `exists` of a key alone): through
 * a view (GetView) that shim_view_refresh made under the GIL, tagged with the
 * read gate's layout, it looks the key's ASCII bytes up in the KeyMap and
 * copies the slot's values (and the field names) inside the gate
 * (aerostore/readgate.py says why that is safe while Python threads write),
 * then makes the Tcl value outside it.  Whatever it cannot decide (no view
 * or a stale one, a transaction, a chain, a value it does not convert) it
 * leaves to the GIL path; a key the map does not hold it answers with no row,
 * as Table.get does.
 *
 * shim_columns_at and shim_column_value read the same views for a page of
 * settled slots (search.c: an ordered walk's page, validated there by fseq),
 * the layout checked once per page instead of once per row.
 *
 * Cost per call: O(fields): the session's slot, six attribute reads, each on
 * every call (a reload that rebinds `rows`, `slots` or `columns`, a
 * republish of the arrays, a close or a reopen are seen at once; nothing is
 * cached here across calls), one key lookup, and a read per column.  For a
 * random key of a big table the time is cache misses, not instructions: the
 * key's dict entry, its slot's int and then, at once, the heap entry and
 * every column's line (prefetched together, so that their misses overlap:
 * about 0.2 us a get less at 1M rows than reading them one after the other).
 */
#include "shim.h"

#include <sched.h>
#include <stdint.h>
#include <structmember.h>
#include <string.h>
#include <time.h>

#include "_keymap_api.h"        /* aerostore/: the extension's C API, the read gate */

static PyObject *state_dict;                     /* aerostore.tclbridge.state.__dict__ */
static PyObject *n_fast_get, *n_txn_table, *n_slots, *n_rows, *n_closed, *n_fseq, *n_columns,
                *n_arrays, *n_schema, *n_names, *n_spellings;
/* aerostore._keymap's C API (its _C_API capsule, aerostore/_keymap_api.h);
 * NULL when its size is not this build's */
static KeyMapAPI *keymap_api;
static long frozen_state = -1;                   /* aerostore.columns.FROZEN */
static PyTypeObject *session_type;               /* Session, whose _txn_table is a slot ... */
static Py_ssize_t txn_offset = -1;               /* ... at this offset (-1: read it by name) */

/* Where Session keeps _txn_table, if it is a plain object slot (member descriptor). */
static void find_txn_slot(void)
{
    PyObject *cls = PyObject_GetAttrString(shim_session_module, "Session");
    PyObject *d = cls && PyType_Check(cls) ? PyObject_GetAttr(cls, n_txn_table) : NULL;

    if (d && PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if ((m->type == T_OBJECT_EX || m->type == T_OBJECT) && !(m->flags & READONLY)) {
            session_type = (PyTypeObject *)cls;
            Py_INCREF(cls);
            txn_offset = m->offset;
        }
    }
    PyErr_Clear();
    Py_XDECREF(d);
    Py_XDECREF(cls);
}

void shim_get_init(void)
{
    PyObject *state = PyImport_ImportModule("aerostore.tclbridge.state");

    /* The module lives for the process: its dict is kept without more ado. */
    if (state) {
        n_fast_get = PyUnicode_InternFromString("fast_get");
        n_txn_table = PyUnicode_InternFromString("_txn_table");
        n_slots = PyUnicode_InternFromString("slots");
        n_rows = PyUnicode_InternFromString("rows");
        n_closed = PyUnicode_InternFromString("_closed");
        n_fseq = PyUnicode_InternFromString("fseq");
        n_columns = PyUnicode_InternFromString("columns");
        n_arrays = PyUnicode_InternFromString("arrays");
        n_schema = PyUnicode_InternFromString("schema");
        n_names = PyUnicode_InternFromString("names");
        n_spellings = PyUnicode_InternFromString("spellings");
        keymap_api = PyCapsule_Import("aerostore._keymap._C_API", 0);
        if (keymap_api && keymap_api->size != sizeof *keymap_api) {
            keymap_api = NULL;  /* the extension and the shim were built apart: no fast paths */
        }
        if (n_fast_get && n_txn_table && n_slots && n_rows && n_closed && n_fseq && n_columns
                && n_arrays && n_schema && n_names && n_spellings && keymap_api) {
            PyObject *columns = PyImport_ImportModule("aerostore.columns");
            PyObject *frozen = columns ? PyObject_GetAttrString(columns, "FROZEN") : NULL;
            state_dict = PyModule_GetDict(state);
            find_txn_slot();
            if (frozen && PyLong_Check(frozen)) {
                frozen_state = PyLong_AsLong(frozen);
            }
            Py_XDECREF(frozen);
            Py_XDECREF(columns);
        }
    }
    if (!state_dict) {
        PyErr_Clear();           /* no fast path: every get takes the general one */
    }
}

/* obj.name (a new reference), or NULL with no error set.  A plain attribute
 * read: the objects keep 3.11's inline attribute values (making their __dict__
 * would slow every attribute access of the engine's own code). */
static PyObject *attr(PyObject *obj, PyObject *name)
{
    /* the generic read called directly when it is the type's: PyObject_GetAttr's
     * own checks skipped (about 11 instructions a read) */
    PyObject *v = Py_TYPE(obj)->tp_getattro == PyObject_GenericGetAttr
        ? PyObject_GenericGetAttr(obj, name) : PyObject_GetAttr(obj, name);

    if (!v) {
        PyErr_Clear();
    }
    return v;
}

/* The session's _txn_table (a new reference), or NULL with no error set. */
static PyObject *txn_table(PyObject *session)
{
    if (txn_offset >= 0 && Py_TYPE(session) == session_type) {
        PyObject *t = *(PyObject **)((char *)session + txn_offset);
        Py_XINCREF(t);
        return t;
    }
    return attr(session, n_txn_table);
}

/* What a field of the row views is, and where its value at the slot lies. */
enum { COL_BAD, COL_F64, COL_I64, COL_U64, COL_I32, COL_U32, COL_I16, COL_U16, COL_BOOL,
       COL_LIST = SHIM_COLUMN_LIST, COL_KEY = SHIM_COLUMN_KEY };
typedef struct FieldAt {
    int kind;
    const char *val;           /* the value (numeric fields) */
    const char *nul;           /* its null flag (numeric fields) */
    PyObject *const *item;     /* the list's item (str and wide int fields) */
} FieldAt;

/* The buffer of memoryview v if it is usable (not released, one dimension,
 * C-contiguous), else NULL. */
static inline const Py_buffer *view_ok(PyObject *v)
{
    PyMemoryViewObject *mv = (PyMemoryViewObject *)v;

    if (!Py_IS_TYPE(v, &PyMemoryView_Type)
            || (mv->flags & (_Py_MEMORYVIEW_RELEASED | _Py_MEMORYVIEW_C)) != _Py_MEMORYVIEW_C
            || (mv->mbuf->flags & _Py_MANAGED_BUFFER_RELEASED)
            || mv->view.ndim != 1 || !mv->view.format) {
        return NULL;
    }
    return &mv->view;
}

/* view_ok's buffer if it also holds slot i, else NULL. */
static inline const Py_buffer *view_at(PyObject *v, Py_ssize_t i)
{
    const Py_buffer *b = view_ok(v);

    return b && i < b->shape[0] ? b : NULL;
}

/* The kind of a values buffer, from its format and item size (int8: a bool). */
static inline int col_kind(const Py_buffer *b)
{
    const char *f = b->format;

    if (f[0] == '\0' || f[1] != '\0') {
        return COL_BAD;
    }
    switch (f[0]) {
    case 'd':
        return b->itemsize == 8 ? COL_F64 : COL_BAD;
    case 'l':
    case 'q':
        return b->itemsize == 8 ? COL_I64 : COL_BAD;
    case 'L':
    case 'Q':
        return b->itemsize == 8 ? COL_U64 : COL_BAD;
    case 'i':
        return b->itemsize == 4 ? COL_I32 : COL_BAD;
    case 'I':
        return b->itemsize == 4 ? COL_U32 : COL_BAD;
    case 'h':
        return b->itemsize == 2 ? COL_I16 : COL_BAD;
    case 'H':
        return b->itemsize == 2 ? COL_U16 : COL_BAD;
    case 'b':
        return b->itemsize == 1 ? COL_BOOL : COL_BAD;
    default:
        return COL_BAD;
    }
}

/* Where each field of slot i lies, in field order (the key at kp), from the row
 * views: at[0 .. *n).  Each address is prefetched: the values of a random slot
 * are in as many cache lines as fields (two per numeric field), and asking
 * for them all at once makes their misses overlap instead of coming one after
 * the other.  0 if the views do not have the documented layout.  O(fields),
 * reading only the views' own (hot) objects. */
static int locate(PyObject *views, Py_ssize_t i, Py_ssize_t kp, FieldAt *at, Py_ssize_t *n)
{
    Py_ssize_t nv = PyTuple_GET_SIZE(views), j = 0, p = 0;

    for (;; p++) {
        PyObject *v;
        const Py_buffer *vb, *nb;
        if (p == kp) {
            at[p].kind = COL_KEY;
            continue;
        }
        if (j == nv) {
            *n = p;
            return p > kp;       /* the key had its place */
        }
        v = PyTuple_GET_ITEM(views, j);
        if (PyList_CheckExact(v)) {
            if (i >= PyList_GET_SIZE(v)) {
                return 0;
            }
            at[p].kind = COL_LIST;
            at[p].item = &PyList_GET_ITEM(v, i);
            __builtin_prefetch(at[p].item);
            j += 1;
            continue;
        }
        if (!(vb = view_at(v, i)) || j + 1 == nv
                || !(nb = view_at(PyTuple_GET_ITEM(views, j + 1), i))
                || nb->itemsize != 1 || nb->format[0] != '?' || nb->format[1] != '\0'
                || (at[p].kind = col_kind(vb)) == COL_BAD) {
            return 0;
        }
        at[p].val = (const char *)vb->buf + i * vb->itemsize;
        at[p].nul = (const char *)nb->buf + i;
        __builtin_prefetch(at[p].val);
        __builtin_prefetch(at[p].nul);
        j += 2;
    }
}

/* A field's value as read from its column, before it becomes a Tcl value:
 * what field_to_tcl and the path without the GIL (copy_row, which copies
 * strings into a buffer) share. */
enum { CELL_NULL, CELL_F64, CELL_INT, CELL_U64, CELL_BOOL, CELL_STR, CELL_KEY };
typedef struct Cell {
    int kind;
    union {
        double d;
        long long i;
        unsigned long long u;
    } v;
    Py_ssize_t off, len;        /* a string's bytes in the buffer */
    Py_ssize_t name_off, name_len;  /* the field's name there (pairs only) */
} Cell;

/* The value at `at` of a numeric column of kind `kind` (unaligned-safe) into
 * out: 1, or 0 for a kind that is not numeric.  The one home of how each
 * column type is read. */
static int read_number(int kind, const char *at, Cell *out)
{
    switch (kind) {
    case COL_F64:
        out->kind = CELL_F64;
        memcpy(&out->v.d, at, sizeof(double));
        return 1;
    case COL_U64:
        out->kind = CELL_U64;
        memcpy(&out->v.u, at, sizeof(unsigned long long));
        return 1;
/* an int column of C type T: its value as a wide int */
#define INT_CELL(K, T)                    \
    case K: {                             \
        T x;                              \
        memcpy(&x, at, sizeof x);         \
        out->kind = CELL_INT;             \
        out->v.i = (long long)x;          \
        return 1;                         \
    }
    INT_CELL(COL_I64, long long)
    INT_CELL(COL_I32, int32_t)
    INT_CELL(COL_U32, uint32_t)
    INT_CELL(COL_I16, int16_t)
    INT_CELL(COL_U16, uint16_t)
#undef INT_CELL
    case COL_BOOL:
        out->kind = CELL_BOOL;
        out->v.i = *(const signed char *)at != 0;
        return 1;
    default:
        return 0;
    }
}

/* A number read_number made, as the Tcl value convert.c makes of the Python
 * value (new, refcount 0). */
static Tcl_Obj *number_to_tcl(const Cell *c)
{
    switch (c->kind) {
    case CELL_F64:
        return shim_double_to_tcl(c->v.d);
    case CELL_U64:
        return shim_u64_to_tcl(c->v.u);
    case CELL_BOOL:
        return shim_bool_to_tcl((int)c->v.i);
    default:
        return shim_wide_to_tcl(c->v.i);
    }
}

/* The Tcl value of one located field (the key: `given` if not NULL), new
 * (refcount 0), or NULL with a Python error.  Each value is what convert.c
 * makes of the Python value Columns.row gives for it. */
static Tcl_Obj *field_to_tcl(const FieldAt *f, PyObject *key, Tcl_Obj *given)
{
    Cell c;

    switch (f->kind) {
    case COL_KEY:
        return given ? given : shim_py_to_tcl(key);
    case COL_LIST:
        return shim_py_to_tcl(*f->item);
    default:
        break;
    }
    if (*f->nul) {
        return shim_null_to_tcl();
    }
    read_number(f->kind, f->val, &c);   /* locate checked the kind */
    return number_to_tcl(&c);
}

/* ---- a page of slots (search.c) ----------------------------------------- */

int shim_columns_at(PyObject *views, Py_ssize_t kp, ShimColumn *cols, Py_ssize_t max,
                    Py_ssize_t *n)
{
    Py_ssize_t nv, j = 0, p = 0;

    if (!PyTuple_CheckExact(views) || kp < 0) {
        return 0;
    }
    nv = PyTuple_GET_SIZE(views);
    for (;; p++) {
        PyObject *v;
        const Py_buffer *vb, *nb;
        if (p >= max) {
            return 0;
        }
        if (p == kp) {
            cols[p].kind = COL_KEY;
            continue;
        }
        if (j == nv) {
            *n = p;
            return p > kp;
        }
        v = PyTuple_GET_ITEM(views, j);
        if (PyList_CheckExact(v)) {
            cols[p].kind = COL_LIST;
            cols[p].list = v;
            j += 1;
            continue;
        }
        if (!(vb = view_ok(v)) || j + 1 == nv || !(nb = view_ok(PyTuple_GET_ITEM(views, j + 1)))
                || nb->itemsize != 1 || nb->format[0] != '?' || nb->format[1] != '\0'
                || (cols[p].kind = col_kind(vb)) == COL_BAD) {
            return 0;
        }
        cols[p].val = vb->buf;
        cols[p].nul = nb->buf;
        cols[p].size = vb->itemsize;
        cols[p].len = vb->shape[0] < nb->shape[0] ? vb->shape[0] : nb->shape[0];
        j += 2;
    }
}

int shim_column_value(const ShimColumn *c, Py_ssize_t slot, Tcl_Obj **out)
{
    FieldAt f;

    *out = NULL;
    if (c->kind == COL_KEY || slot < 0) {
        return SHIM_COLUMN_MISS;
    }
    if (c->kind == COL_LIST) {
        PyObject *item;
        if (slot >= PyList_GET_SIZE(c->list)) {
            return SHIM_COLUMN_MISS;
        }
        item = PyList_GET_ITEM(c->list, slot);
        if (item == Py_None) {
            return 0;
        }
        *out = shim_py_to_tcl(item);
        return *out ? 0 : -1;
    }
    if (slot >= c->len) {
        return SHIM_COLUMN_MISS;
    }
    if (c->nul[slot]) {
        return 0;
    }
    f.kind = c->kind;
    f.val = c->val + slot * c->size;
    f.nul = c->nul + slot;
    *out = field_to_tcl(&f, NULL, NULL);        /* a number: never fails */
    return 0;
}

/* The located fields at[0 .. n) as a Tcl list (refcount 0), or NULL with a
 * Python error (a str that could not be converted). */
static Tcl_Obj *row_to_tcl(const FieldAt *at, Py_ssize_t n, PyObject *key, Tcl_Obj *given)
{
    Tcl_Obj *small[16], **objs = small;
    Py_ssize_t p;

    if (n > 16 && !(objs = PyMem_Malloc(sizeof(Tcl_Obj *) * n))) {
        PyErr_NoMemory();
        return NULL;
    }
    for (p = 0; p < n; p++) {
        if (!(objs[p] = field_to_tcl(&at[p], key, given))) {
            break;
        }
    }
    return shim_list_of(objs, p, n, given, small);
}

/* ---- without the GIL ----------------------------------------------------- */

/* What shim_get_nogil reads, made by shim_view_refresh (GIL held) from the
 * objects the store publishes, and tagged with the gate's layout read before
 * them: the store's KeyMap, its columns' state array (one byte a slot) and
 * where each field's values lie (ShimColumn).  The gate keeps those objects
 * alive (keep) until the layout moves on (changed: a rebinding, a close),
 * and then lets them go: a view of an older layout is never read again, so
 * its pointers may dangle. */
typedef struct GetView {
    uint64_t layout;
    PyObject *keymap;
    const unsigned char *state;
    Py_ssize_t nstate, kp, n;
    const char *names;          /* the field names, NUL-separated (ASCII), or NULL */
    const char *spellings;      /* each name or alias a field answers to: its position (a
                                 * byte), the name, NUL; a 0xFF byte after the last; or NULL */
    ShimColumn cols[];
} GetView;

static GetView *get_view;           /* read with __atomic loads outside the GIL */

/* The n field names of store.schema.names (a tuple), each ASCII without NUL, into
 * out (NUL after each; at most cap bytes): their total length, or -1. */
static Py_ssize_t field_names(PyObject *store, Py_ssize_t n, char *out, Py_ssize_t cap)
{
    PyObject *schema = attr(store, n_schema), *names = schema ? attr(schema, n_names) : NULL;
    Py_ssize_t used = 0, p;

    if (!names || !PyTuple_CheckExact(names) || PyTuple_GET_SIZE(names) != n) {
        used = -1;
    }
    for (p = 0; used >= 0 && p < n; p++) {
        PyObject *name = PyTuple_GET_ITEM(names, p);
        Py_ssize_t len;
        if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_COMPACT_ASCII(name)
                || (len = PyUnicode_GET_LENGTH(name)) + 1 > cap - used
                || memchr(PyUnicode_DATA(name), 0, (size_t)len)) {
            used = -1;
            break;
        }
        memcpy(out + used, PyUnicode_DATA(name), (size_t)len + 1);
        used += len + 1;
    }
    Py_XDECREF(names);
    Py_XDECREF(schema);
    return used;
}

/* store.schema.spellings ((name, position) pairs) into out as GetView's
 * spellings says (at most cap bytes): the bytes used, or -1 (a name not ASCII
 * or with a NUL, a position past the n fields, no room). */
static Py_ssize_t field_spellings(PyObject *store, Py_ssize_t n, char *out, Py_ssize_t cap)
{
    PyObject *schema = attr(store, n_schema), *sp = schema ? attr(schema, n_spellings) : NULL;
    Py_ssize_t used = 0, i;

    if (!sp || !PyTuple_CheckExact(sp)) {
        used = -1;
    }
    for (i = 0; used >= 0 && i < PyTuple_GET_SIZE(sp); i++) {
        PyObject *pair = PyTuple_GET_ITEM(sp, i), *name;
        Py_ssize_t len, pos;
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2
                || !PyUnicode_CheckExact(name = PyTuple_GET_ITEM(pair, 0))
                || !PyUnicode_IS_COMPACT_ASCII(name)
                || (pos = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 1))) < 0 || pos >= n
                || (len = PyUnicode_GET_LENGTH(name)) + 3 > cap - used
                || memchr(PyUnicode_DATA(name), 0, (size_t)len)) {
            used = -1;
            break;
        }
        out[used++] = (char)pos;
        memcpy(out + used, PyUnicode_DATA(name), (size_t)len + 1);
        used += len + 1;
    }
    if (used >= 0) {
        out[used++] = (char)0xFF;
    }
    Py_XDECREF(sp);
    Py_XDECREF(schema);
    return used;
}

/* Make and publish the view (GIL held); the old one is freed once no reader
 * can be inside it (the gate's drain). */
static void view_build(uint64_t layout, PyObject *store, PyObject *slots, PyObject *arrays,
                       PyObject *views, Py_ssize_t kp)
{
    ShimColumn cols[64];
    Py_ssize_t n, nnames = -1, nspell = -1;
    GetView *v, *old;
    PyObject *state = NULL, *refs = NULL;
    const Py_buffer *b;
    char names[1024], spell[2048];

    if (frozen_state < 0 || !shim_columns_at(views, kp, cols, 64, &n)
            || !(state = PyMemoryView_FromObject(PyTuple_GET_ITEM(arrays, 0)))
            || !(b = view_ok(state)) || b->itemsize != 1
            || !(refs = PyTuple_Pack(3, slots, views, state))) {
        goto fail;
    }
    nnames = field_names(store, n, names, sizeof names);     /* -1: no pairs, no field names */
    nspell = nnames > 0 ? field_spellings(store, n, spell, sizeof spell) : -1;
    if (!(v = PyMem_Calloc(1, sizeof(GetView) + (size_t)n * sizeof(ShimColumn)
                              + (nnames > 0 ? (size_t)nnames : 0)
                              + (nspell > 0 ? (size_t)nspell : 0)))) {
        goto fail;
    }
    if (nnames > 0) {
        char *at = (char *)&v->cols[n];
        memcpy(at, names, (size_t)nnames);
        v->names = at;
        if (nspell > 0) {
            memcpy(at + nnames, spell, (size_t)nspell);
            v->spellings = at + nnames;
        }
    }
    v->layout = layout;
    v->keymap = slots;
    v->state = b->buf;
    v->nstate = b->shape[0];
    v->kp = kp;
    v->n = n;
    memcpy(v->cols, cols, (size_t)n * sizeof(ShimColumn));
    if (!keymap_api->keep(refs, layout)) {
        PyMem_Free(v);          /* the layout moved on meanwhile: no view */
        v = NULL;
    }
    Py_DECREF(refs);
    Py_DECREF(state);
    old = __atomic_exchange_n(&get_view, v, __ATOMIC_ACQ_REL);
    if (old) {
        keymap_api->drain();    /* a reader may still be inside the old view */
        PyMem_Free(old);
    }
    return;
fail:
    PyErr_Clear();
    Py_XDECREF(state);
    Py_XDECREF(refs);
}

/* Copy slot's fields from view v into cells (strings into buf, at most cap
 * bytes): 1, or 0 for a value this path does not convert (a str that is not
 * ASCII or holds a NUL, a wide int, a slot past a column).  No GIL: inside the
 * gate, whose holds keep every value and string read here whole. */
static int copy_row(const GetView *v, Py_ssize_t slot, Cell *cells, char *buf, Py_ssize_t cap,
                    int with_names)
{
    Py_ssize_t p, used = 0;
    const char *name = v->names;

    for (p = 0; p < v->n; p++) {
        const ShimColumn *c = &v->cols[p];
        Cell *out = &cells[p];
        if (with_names) {
            Py_ssize_t len = (Py_ssize_t)strlen(name);
            if (len > cap - used) {
                return 0;
            }
            memcpy(buf + used, name, (size_t)len);
            out->name_off = used;
            out->name_len = len;
            used += len;
            name += len + 1;
        }
        if (c->kind == COL_KEY) {
            out->kind = CELL_KEY;
            continue;
        }
        if (c->kind == COL_LIST) {
            PyObject *o;
            Py_ssize_t len;
            if (slot >= PyList_GET_SIZE(c->list)) {
                return 0;
            }
            o = PyList_GET_ITEM(c->list, slot);
            if (o == Py_None) {
                out->kind = CELL_NULL;
                continue;
            }
            if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_COMPACT_ASCII(o)
                    || (len = PyUnicode_GET_LENGTH(o)) > cap - used
                    || memchr(PyUnicode_DATA(o), 0, (size_t)len)) {
                return 0;
            }
            memcpy(buf + used, PyUnicode_DATA(o), (size_t)len);
            out->kind = CELL_STR;
            out->off = used;
            out->len = len;
            used += len;
            continue;
        }
        if (slot >= c->len) {
            return 0;
        }
        if (c->nul[slot]) {
            out->kind = CELL_NULL;
            continue;
        }
        if (!read_number(c->kind, c->val + slot * c->size, out)) {
            return 0;
        }
    }
    return 1;
}

/* The cells as a Tcl list (refcount 0): each value as convert.c makes it of
 * the Python value (the same functions), the key field the argument itself. */
static Tcl_Obj *cells_to_tcl(const Cell *cells, const int *sel, Py_ssize_t n, const char *buf,
                             Tcl_Obj *key, ShimRowForm form)
{
    Tcl_Obj *small[32], **objs = small, *list;
    Py_ssize_t i, k = 0;
    int pairs = form != SHIM_ROW_LIST;

    if (2 * n > 32 && !(objs = (Tcl_Obj **)ckalloc(sizeof(Tcl_Obj *) * 2 * n))) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        const Cell *c = &cells[sel[i]];
        Tcl_Obj *o;
        if (c->kind == CELL_NULL && form == SHIM_ROW_PAIRS) {
            continue;           /* array_get leaves nulls out, as Session._named does */
        }
        switch (c->kind) {
        case CELL_KEY:
            o = key;
            break;
        case CELL_NULL:
            o = shim_null_to_tcl();
            break;
        case CELL_STR:
            o = Tcl_NewStringObj(buf + c->off, (int)c->len);
            break;
        default:
            o = number_to_tcl(c);
            break;
        }
        if (pairs) {
            objs[k++] = Tcl_NewStringObj(buf + c->name_off, (int)c->name_len);
        }
        objs[k++] = o;
    }
    list = Tcl_NewListObj((int)k, objs);
    if (objs != small) {
        ckfree(objs);
    }
    return list;
}

/* The position of field name s (n bytes) among the view's spellings, or -1. */
static int spelled(const GetView *v, const char *s, int n)
{
    const char *at = v->spellings;

    while ((unsigned char)*at != 0xFF) {
        int pos = (unsigned char)*at++;
        size_t len = strlen(at);
        if (len == (size_t)n && memcmp(at, s, (size_t)n) == 0) {
            return pos;
        }
        at += len + 1;
    }
    return -1;
}

/* How long a get waits for a writer's hold of the gate (a freeze, about 0.1-1
 * ms) before it takes the GIL path, which would wait for the same writer. */
#define HOLD_WAIT_NS 5000000LL

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int shim_get_nogil(ShimInterp *si, Tcl_Interp *interp, Tcl_Obj *key_obj, ShimRowForm form,
                   int nf, Tcl_Obj *const fields[])
{
    ReadGate *g;
    const char *s, *fs[64];
    int len, i, flen[64], sel[64];
    Tcl_WideInt w;
    long long start = 0;
    Cell cells[64];
    char buf[1024];
    GetView *v;
    Py_ssize_t n;
    Tcl_Obj *res;

    if (!keymap_api || !si->session || txn_offset < 0 || Py_TYPE(si->session) != session_type
            || *(PyObject **)((char *)si->session + txn_offset) != Py_None
            || shim_is_pure_int(key_obj, &w)) {
        return SHIM_NOT_HANDLED;     /* a transaction, an int key: the GIL path decides */
    }
    if (nf > 64 || (nf && form == SHIM_ROW_EXISTS)) {
        return SHIM_NOT_HANDLED;
    }
    for (i = 0; i < nf; i++) {
        fs[i] = Tcl_GetStringFromObj(fields[i], &flen[i]);
    }
    s = Tcl_GetStringFromObj(key_obj, &len);
    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] - 1u >= 0x7fu) {
            return SHIM_NOT_HANDLED; /* not ASCII, or a raw NUL: the GIL path converts it */
        }
    }
    g = keymap_api->gate;
    for (;;) {
        int64_t seq = rg_enter(g);
        Py_ssize_t slot;
        int ok;
        if (seq < 0) {
            /* a writer holds the gate: wait for it, a little */
            long long t = now_ns();
            if (!start) {
                start = t;
                __atomic_add_fetch(&g->waited, 1, __ATOMIC_RELAXED);
            } else if (t - start > HOLD_WAIT_NS) {
                __atomic_add_fetch(&g->fell_back, 1, __ATOMIC_RELAXED);
                return SHIM_NOT_HANDLED;
            }
            if (t - start < 50000) {
                sched_yield();
            } else {
                struct timespec ts = {0, 20000};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        v = __atomic_load_n(&get_view, __ATOMIC_ACQUIRE);
        ok = v && v->layout == rg_layout(g) && v->n <= 64 && (!nf || v->spellings);
        if (ok && nf) {
            /* the fields named, by name or alias (a name the view does not
             * know: the GIL path says what is wrong) */
            for (i = 0; ok && i < nf; i++) {
                ok = (sel[i] = spelled(v, fs[i], flen[i])) >= 0;
            }
        }
        if (ok) {
            /* A key the map does not hold has no version at all: no row.  (An
             * insert stores its key before it commits, a key leaves the map
             * only once dead to every snapshot, and a half-made entry is an
             * insert not yet committed.) */
            slot = keymap_api->lookup_ascii(v->keymap, s, len);
            n = slot < 0 ? 0 : v->n;
            ok = slot < 0 || (slot < v->nstate && v->state[slot] == frozen_state
                              && (form == SHIM_ROW_EXISTS
                                  || ((form == SHIM_ROW_LIST || v->names)
                                      && copy_row(v, slot, cells, buf, sizeof buf,
                                                  form != SHIM_ROW_LIST))));
        }
        if (!rg_leave(g, seq)) {
            continue;                /* a hold began meanwhile: read again */
        }
        if (!ok) {
            __atomic_add_fetch(&g->fell_back, 1, __ATOMIC_RELAXED);
            return SHIM_NOT_HANDLED;
        }
        break;
    }
    if (!nf) {
        for (i = 0; i < n; i++) {
            sel[i] = i;              /* every field, in order */
        }
    }
    if (form == SHIM_ROW_EXISTS) {
        Tcl_SetObjResult(interp, shim_bool_to_tcl(n != 0));
    } else if (n == 0) {
        Tcl_ResetResult(interp);     /* no such key: the empty result, as the GIL path gives */
    } else if ((res = cells_to_tcl(cells, sel, nf ? nf : n, buf, key_obj, form)) != NULL) {
        Tcl_SetObjResult(interp, res);
    } else {
        return SHIM_NOT_HANDLED;
    }
    __atomic_add_fetch(&g->answered, 1, __ATOMIC_RELAXED);
    return TCL_OK;
}

void shim_view_refresh(ShimInterp *si)
{
    PyObject *fast, *store, *closed = NULL, *slots = NULL, *columns = NULL, *arrays = NULL;
    GetView *v = __atomic_load_n(&get_view, __ATOMIC_ACQUIRE);
    Py_ssize_t kp;
    uint64_t layout;

    if (!state_dict) {
        return;
    }
    layout = rg_layout(keymap_api->gate);      /* before what it tags is read */
    if (v && v->layout == layout) {
        return;
    }
    fast = PyDict_GetItemWithError(state_dict, n_fast_get);       /* borrowed */
    if (fast && PyTuple_CheckExact(fast) && PyTuple_GET_SIZE(fast) == 3
            && (kp = PyLong_AsSsize_t(PyTuple_GET_ITEM(fast, 2))) >= 0
            && (closed = attr(PyTuple_GET_ITEM(fast, 1), n_closed)) == Py_False
            && (slots = attr(store = PyTuple_GET_ITEM(fast, 0), n_slots))
            && Py_TYPE(slots) == keymap_api->type
            && (columns = attr(store, n_columns)) && (arrays = attr(columns, n_arrays))
            && PyTuple_CheckExact(arrays) && PyTuple_GET_SIZE(arrays) >= 4
            && PyTuple_CheckExact(PyTuple_GET_ITEM(arrays, 3))) {
        view_build(layout, store, slots, arrays, PyTuple_GET_ITEM(arrays, 3), kp);
    }
    PyErr_Clear();
    Py_XDECREF(closed);
    Py_XDECREF(slots);
    Py_XDECREF(columns);
    Py_XDECREF(arrays);
}

int shim_get_row(ShimInterp *si, Tcl_Interp *interp, Tcl_Obj *key_obj, PyObject *key)
{
    PyObject *fast, *store, *txn = NULL, *slots = NULL, *rows = NULL, *closed = NULL;
    PyObject *fseq = NULL, *columns = NULL, *arrays = NULL, *head, *views;
    Py_ssize_t kp, i, nv, n;
    long long f;
    int overflow;
    FieldAt small[16], *at = small;
    Tcl_Obj *res, *given = NULL;
    int code = SHIM_NOT_HANDLED;

    if (!state_dict || !si->session || !PyUnicode_CheckExact(key)) {
        return SHIM_NOT_HANDLED;
    }
    fast = PyDict_GetItemWithError(state_dict, n_fast_get);       /* borrowed */
    if (!fast || !PyTuple_CheckExact(fast) || PyTuple_GET_SIZE(fast) != 3) {
        PyErr_Clear();
        return SHIM_NOT_HANDLED;
    }
    store = PyTuple_GET_ITEM(fast, 0);
    kp = PyLong_AsSsize_t(PyTuple_GET_ITEM(fast, 2));
    /* Everything that is the same for every key first (hot objects): then the
     * key's own reads, whose cache misses overlap as far as they can. */
    if (kp < 0 || (txn = txn_table(si->session)) != Py_None
            || (closed = attr(PyTuple_GET_ITEM(fast, 1), n_closed)) != Py_False
            || !(fseq = attr(store, n_fseq)) || !PyLong_CheckExact(fseq)
            || ((f = PyLong_AsLongLongAndOverflow(fseq, &overflow)), overflow) || (f & 1)
            || !(slots = attr(store, n_slots)) || Py_TYPE(slots) != keymap_api->type
            || !(rows = attr(store, n_rows)) || !PyList_CheckExact(rows)
            || !(columns = attr(store, n_columns)) || !(arrays = attr(columns, n_arrays))
            || !PyTuple_CheckExact(arrays) || PyTuple_GET_SIZE(arrays) < 4
            || !PyTuple_CheckExact(views = PyTuple_GET_ITEM(arrays, 3))) {
        PyErr_Clear();
        goto out;
    }
    i = keymap_api->lookup(slots, key);              /* str hash and compare: no Python code */
    if (i < 0 || i >= PyList_GET_SIZE(rows)) {
        PyErr_Clear();
        goto out;
    }
    __builtin_prefetch(&PyList_GET_ITEM(rows, i));
    nv = PyTuple_GET_SIZE(views);
    if (nv + 1 > 16 && (nv + 1 > INT_MAX || !(at = PyMem_Malloc(sizeof(FieldAt) * (nv + 1))))) {
        at = small;
        goto out;                /* the general path says what is wrong */
    }
    if (!locate(views, i, kp, at, &n)) {
        goto out;
    }
    head = PyList_GET_ITEM(rows, i);
    if (head != key) {
        /* Equal exact strs have the same kind and length (CPython's canonical
         * form), so their data compare as bytes, as str == does. */
        if (!PyUnicode_CheckExact(head) || PyUnicode_GET_LENGTH(head) != PyUnicode_GET_LENGTH(key)
                || PyUnicode_KIND(head) != PyUnicode_KIND(key)
                || memcmp(PyUnicode_DATA(head), PyUnicode_DATA(key),
                          (size_t)PyUnicode_GET_LENGTH(key) * PyUnicode_KIND(key)) != 0) {
            goto out;
        }
    }
    if (PyUnicode_IS_ASCII(key)
            && !memchr(PyUnicode_DATA(key), 0, (size_t)PyUnicode_GET_LENGTH(key))) {
        /* The key's own Tcl value has exactly the bytes its conversion would
         * make: the list holds it instead of a copy (one object less to make
         * and free). */
        given = key_obj;
    }
    res = row_to_tcl(at, n, key, given);
    if (res) {
        Tcl_SetObjResult(interp, res);
        code = TCL_OK;
    } else {
        code = shim_python_error(interp);
    }
out:
    if (at != small) {
        PyMem_Free(at);
    }
    Py_XDECREF(txn);
    Py_XDECREF(slots);
    Py_XDECREF(rows);
    Py_XDECREF(closed);
    Py_XDECREF(fseq);
    Py_XDECREF(columns);
    Py_XDECREF(arrays);
    return code;
}
