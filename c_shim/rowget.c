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

#include <stdint.h>
#include <structmember.h>
#include <string.h>

static PyObject *state_dict;                     /* aerostore.tclbridge.state.__dict__ */
static PyObject *n_fast_get, *n_txn_table, *n_slots, *n_rows, *n_closed, *n_fseq, *n_columns,
                *n_arrays;
/* aerostore._keymap's C API (its _C_API capsule): the KeyMap type, and the slot of
 * a key (-1: absent; no exception is ever set), with no Python call. */
static struct {
    PyTypeObject *type;
    Py_ssize_t (*lookup)(PyObject *, PyObject *);
} *keymap_api;
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
        keymap_api = PyCapsule_Import("aerostore._keymap._C_API", 0);
        if (n_fast_get && n_txn_table && n_slots && n_rows && n_closed && n_fseq && n_columns
                && n_arrays && keymap_api) {
            state_dict = PyModule_GetDict(state);
            find_txn_slot();
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

/* The Tcl value of one located field (the key: `given` if not NULL), new
 * (refcount 0), or NULL with a Python error.  Each value is what convert.c
 * makes of the Python value Columns.row gives for it. */
static Tcl_Obj *field_to_tcl(const FieldAt *f, PyObject *key, Tcl_Obj *given)
{
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
    switch (f->kind) {
    case COL_F64: {
        double d;
        memcpy(&d, f->val, sizeof d);
        return shim_double_to_tcl(d);
    }
    case COL_U64: {
        unsigned long long u;
        memcpy(&u, f->val, sizeof u);
        return shim_u64_to_tcl(u);
    }
/* an int column of C type T: its value (unaligned-safe), as a Tcl wide int */
#define INT_COLUMN(kind, T) \
    case kind: {                          \
        T x;                              \
        memcpy(&x, f->val, sizeof x);     \
        return shim_wide_to_tcl(x);       \
    }
    INT_COLUMN(COL_I64, long long)
    INT_COLUMN(COL_I32, int32_t)
    INT_COLUMN(COL_U32, uint32_t)
    INT_COLUMN(COL_I16, int16_t)
    INT_COLUMN(COL_U16, uint16_t)
#undef INT_COLUMN
    default:
        return shim_bool_to_tcl(*(const signed char *)f->val != 0);
    }
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
