/*
 * FlightState search: the options and the row loop.
 *
 * The options are read here, by Tcl (options.c: unique prefixes, -limit and
 * -offset by Tcl_GetWideIntFromObj, -countOnly and -delete by
 * Tcl_GetBooleanFromObj; later options override earlier ones).  Then
 *
 *   session.t_search(compare, sort, fields, desc, limit, offset, bind, key, code,
 *                    count_only, delete)
 *
 * (compare, sort, fields: the values given, or None; bind: the binding option
 * given, by its full name (-get, -array_get, -array_get_with_nulls or -array),
 * or None; key and code: whether -key and -code were given) runs the query on one snapshot and answers either a
 * number (nothing to bind or run: -countOnly, or no -key/-get/-array.../-code)
 * or a plan tuple:
 *
 *   (count, rows, key_pos, positions, names, finish, check)
 *
 * rows are row tuples; positions/names the fields to bind, in order; finish
 * None, or a callable finish(visited, completed) -> result for -delete (it
 * deletes the visited rows, or nothing when completed is false).  check None,
 * or (store, fseq, s, redo): then a row may also be a settled row's slot (an
 * int: an ordered walk's page, planner.Walk.page), read here from the
 * store's columns as `get` reads a row (rowget.c), without a Python tuple.
 *
 * Such a page is converted to Tcl values whole, before any row is bound (the
 * body may write), with the GIL held: a slot is trusted only while
 * store.fseq is still fseq (even), read before and after the page: no writer
 * section froze or freed a slot since the snapshot s was released, so a slot
 * whose heap entry is still its key holds the row the walk tested, and one
 * thawed since holds it in its chain (store.row_at(slot, s), the only Python
 * called here, whence the check after).  When fseq moved, the page is
 * dropped and redo() -> (count, rows) runs the search again on a new
 * snapshot (tuples only).
 *
 * Tuple rows are converted to Tcl values in chunks while holding the GIL, then
 * bound and the body run with the GIL released.  The body is the caller's
 * Tcl_Obj, so its bytecode is compiled once and kept; variables are set from
 * values, never by parsing a script.  Body results follow foreach: continue
 * goes on, break ends the search (that row counts), error and return end it.
 */
#include "shim.h"

#include <stdlib.h>

#define CHUNK 64

static const ShimOption search_options[] = {
    {"-array", SHIM_OPT_VALUE, 0, NULL},
    {"-array_get", SHIM_OPT_VALUE, 0, NULL},
    {"-array_get_with_nulls", SHIM_OPT_VALUE, 0, NULL},
    {"-asc", SHIM_OPT_FLAG, 0, NULL},
    {"-code", SHIM_OPT_VALUE, 0, NULL},
    {"-compare", SHIM_OPT_VALUE, 0, NULL},
    {"-countOnly", SHIM_OPT_BOOL, 0, NULL},
    {"-delete", SHIM_OPT_BOOL, 0, NULL},
    {"-desc", SHIM_OPT_FLAG, 0, NULL},
    {"-fields", SHIM_OPT_VALUE, 0, NULL},
    {"-get", SHIM_OPT_VALUE, 0, NULL},
    {"-key", SHIM_OPT_VALUE, 0, NULL},
    {"-limit", SHIM_OPT_INT, 0, "an integer >= 0 (0 = no limit)"},
    {"-offset", SHIM_OPT_INT, 0, "an integer >= 0"},
    {"-sort", SHIM_OPT_VALUE, 0, NULL},
    {NULL, SHIM_OPT_VALUE, 0, NULL}
};
enum { O_ARRAY, O_ARRAY_GET, O_ARRAY_GET_NULLS, O_ASC, O_CODE, O_COMPARE, O_COUNT_ONLY, O_DELETE,
       O_DESC, O_FIELDS, O_GET, O_KEY, O_LIMIT, O_OFFSET, O_SORT };
/* A binding is the index of its option here (O_GET, O_ARRAY_GET,
 * O_ARRAY_GET_NULLS or O_ARRAY), or NO_BIND; Python is told the option's
 * name, never a number. */
#define NO_BIND (-1)

/* The options of one search. */
typedef struct Options {
    Tcl_Obj *compare, *sort, *fields;      /* NULL: not given */
    int desc, count_only, del;
    Tcl_WideInt limit, offset;
    int bind;                              /* O_GET ... O_ARRAY, or NO_BIND */
    Tcl_Obj *key_var, *bind_var, *body;    /* NULL: not given */
} Options;

static int parse_options(Tcl_Interp *interp, int objc, Tcl_Obj *const objv[], Options *o)
{
    ShimOptionValue v;
    int i, idx;

    for (i = 0; i < objc; i += v.obj ? 2 : 1) {
        if (shim_option(interp, objc, objv, i, search_options, &idx, &v) != TCL_OK) {
            return TCL_ERROR;
        }
        switch (idx) {
        case O_ASC: o->desc = 0; break;
        case O_DESC: o->desc = 1; break;
        case O_COMPARE: o->compare = v.obj; break;
        case O_SORT: o->sort = v.obj; break;
        case O_FIELDS: o->fields = v.obj; break;
        case O_LIMIT: o->limit = v.num; break;
        case O_OFFSET: o->offset = v.num; break;
        case O_COUNT_ONLY: o->count_only = (int)v.num; break;
        case O_DELETE: o->del = (int)v.num; break;
        case O_KEY: o->key_var = v.obj; break;
        case O_CODE: o->body = v.obj; break;
        default:       /* -get, -array_get, -array_get_with_nulls, -array */
            if (o->bind != NO_BIND && o->bind != idx) {
                return shim_usage_message(interp, Tcl_NewStringObj("only one of -get, -array_get, "
                                          "-array_get_with_nulls and -array may be given", -1),
                                          "OPTION", search_options[idx].name);
            }
            o->bind = idx;
            o->bind_var = v.obj;
        }
    }
    return TCL_OK;
}

/* session.t_search(...) with the options (see the top of this file). */
static PyObject *call_search(ShimInterp *si, const Options *o)
{
    PyObject *base[2 + 11] = {NULL}, **args = base + 2, *r = NULL;
    int i, n = 11;

    args[0] = shim_arg_or_none(o->compare);
    args[1] = args[0] ? shim_arg_or_none(o->sort) : NULL;
    args[2] = args[1] ? shim_arg_or_none(o->fields) : NULL;
    args[3] = PyBool_FromLong(o->desc);
    args[4] = PyLong_FromLongLong((long long)o->limit);
    args[5] = PyLong_FromLongLong((long long)o->offset);
    args[6] = o->bind == NO_BIND ? shim_arg_or_none(NULL)
                                 : PyUnicode_FromString(search_options[o->bind].name);
    args[7] = PyBool_FromLong(o->key_var != NULL);
    args[8] = PyBool_FromLong(o->body != NULL);
    args[9] = PyBool_FromLong(o->count_only);
    args[10] = PyBool_FromLong(o->del);
    for (i = 0; i < n && args[i]; i++) {
    }
    if (i == n) {
        r = shim_call_stack(si, "t_search", base, n);
    }
    for (i = 0; i < n; i++) {
        Py_XDECREF(args[i]);
    }
    return r;
}

typedef struct Plan {
    Py_ssize_t count;
    PyObject *rows;            /* list of tuples (and slots: check); a new reference */
    PyObject *check;           /* borrowed, or NULL */
    int key_pos;
    int nf;                    /* number of bound fields */
    int *positions;
    Tcl_Obj **names;           /* field names, one Tcl_Obj each (refcounted) */
    Tcl_Obj **scratch;         /* room for one row's values (-get) */
    Tcl_Obj *empty;            /* the value bound for a null (refcounted) */
    int bind;                  /* O_GET ... O_ARRAY, or NO_BIND */
    Tcl_Obj *key_var, *bind_var, *body;
    PyObject *finish;          /* borrowed, or NULL */
} Plan;

static int var_error(Tcl_Interp *interp)
{
    return shim_usage_error(interp, "VARIABLE");
}

static int plan_from_tuple(Plan *p, PyObject *t, const Options *o)
{
    PyObject *positions, *names;
    int i;

    if (!PyArg_ParseTuple(t, "nO!iO!O!OO", &p->count, &PyList_Type, &p->rows, &p->key_pos,
                          &PyTuple_Type, &positions, &PyTuple_Type, &names, &p->finish,
                          &p->check)) {
        p->rows = NULL;
        return -1;
    }
    Py_INCREF(p->rows);
    if (PyTuple_GET_SIZE(positions) != PyTuple_GET_SIZE(names)
            || (p->check != Py_None && (!PyTuple_CheckExact(p->check)
                                        || PyTuple_GET_SIZE(p->check) != 4))) {
        PyErr_SetString(PyExc_ValueError, "bad search plan");
        return -1;
    }
    if (p->check == Py_None) {
        p->check = NULL;
    }
    p->bind = o->bind;
    p->key_var = o->key_var;
    p->bind_var = o->bind_var;
    p->body = o->body;
    if (p->finish == Py_None) {
        p->finish = NULL;
    }
    p->nf = (int)PyTuple_GET_SIZE(positions);
    p->positions = malloc(sizeof(int) * (p->nf + 1));
    p->names = malloc(sizeof(Tcl_Obj *) * (p->nf + 1));
    p->scratch = malloc(sizeof(Tcl_Obj *) * (p->nf + 1));
    p->empty = Tcl_NewObj();
    Tcl_IncrRefCount(p->empty);
    if (!p->positions || !p->names || !p->scratch) {
        PyErr_NoMemory();
        return -1;
    }
    for (i = 0; i < p->nf; i++) {
        p->positions[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(positions, i));
        p->names[i] = shim_py_to_tcl(PyTuple_GET_ITEM(names, i));
        if (!p->names[i] || (p->positions[i] == -1 && PyErr_Occurred())) {
            p->nf = i;
            return -1;
        }
        Tcl_IncrRefCount(p->names[i]);
    }
    return 0;
}

static void plan_free(Plan *p)
{
    int i;

    if (p->names) {
        for (i = 0; i < p->nf; i++) {
            Tcl_DecrRefCount(p->names[i]);
        }
    }
    free(p->names);
    free(p->scratch);
    free(p->positions);
    Py_XDECREF(p->rows);
    if (p->empty) {
        Tcl_DecrRefCount(p->empty);
    }
}

static void release_chunk(Tcl_Obj **vals, Py_ssize_t count)
{
    Py_ssize_t i;

    for (i = 0; i < count; i++) {
        if (vals[i]) {
            Tcl_DecrRefCount(vals[i]);
            vals[i] = NULL;
        }
    }
}

/* One row tuple into out: the key then the bound fields; NULL for a null (and
 * for the key without -key).  GIL held.  0 or -1 (Python error; the values
 * made are left in out for the caller to release). */
static int convert_tuple(Plan *p, PyObject *row, Tcl_Obj **out)
{
    int width = p->nf + 1, j;

    if (!PyTuple_Check(row)) {
        PyErr_SetString(PyExc_TypeError, "search row is not a tuple");
        return -1;
    }
    for (j = 0; j < width; j++) {
        int pos = j == 0 ? p->key_pos : p->positions[j - 1];
        PyObject *v;
        if ((j == 0 && !p->key_var) || pos < 0 || pos >= PyTuple_GET_SIZE(row)) {
            continue;
        }
        v = PyTuple_GET_ITEM(row, pos);
        if (v == Py_None) {
            continue;
        }
        out[j] = shim_py_to_tcl(v);
        if (!out[j]) {
            return -1;
        }
        Tcl_IncrRefCount(out[j]);
    }
    return 0;
}

/* Convert rows[start, start+n) (tuples) into vals (all NULL on entry).  GIL
 * held.  0 or -1 (Python error, vals released). */
static int convert_chunk(Plan *p, Py_ssize_t start, int n, Tcl_Obj **vals)
{
    int width = p->nf + 1, r;

    for (r = 0; r < n; r++) {
        if (convert_tuple(p, PyList_GET_ITEM(p->rows, start + r), vals + r * width) != 0) {
            release_chunk(vals, (Py_ssize_t)(r + 1) * width);
            return -1;
        }
    }
    return 0;
}

/* What convert_page answers when the page's slots cannot be trusted. */
#define PAGE_STALE 1

/* Attribute names, interned once (GIL held). */
static PyObject *n_fseq, *n_rows, *n_columns, *n_arrays, *n_row_at;

static int page_names(void)
{
    if (!n_row_at) {
        n_fseq = PyUnicode_InternFromString("fseq");
        n_rows = PyUnicode_InternFromString("rows");
        n_columns = PyUnicode_InternFromString("columns");
        n_arrays = PyUnicode_InternFromString("arrays");
        n_row_at = n_fseq && n_rows && n_columns && n_arrays
            ? PyUnicode_InternFromString("row_at") : NULL;
    }
    return n_row_at ? 0 : -1;
}

/* store.fseq if it is an int in 64 bits, else -1 (no error set). */
static long long fseq_of(PyObject *store)
{
    PyObject *f = PyObject_GetAttr(store, n_fseq);
    long long v = -1;
    int overflow = 0;

    if (f && PyLong_CheckExact(f)) {
        v = PyLong_AsLongLongAndOverflow(f, &overflow);
        if (overflow) {
            v = -1;
        }
    }
    Py_XDECREF(f);
    PyErr_Clear();
    return v;
}

/* One slot's row into out, read from the columns (cols[0 .. ncols), NULL: not
 * usable) while heads[slot] is its key; else store.row_at(slot, s).  GIL
 * held.  0, PAGE_STALE, or -1 (Python error); made values are left in out. */
static int convert_slot(Plan *p, PyObject *heads, const ShimColumn *cols, Py_ssize_t ncols,
                        Py_ssize_t slot, Tcl_Obj **out)
{
    int width = p->nf + 1, j, rc;
    PyObject *head, *row;

    if (slot < 0 || slot >= PyList_GET_SIZE(heads)) {
        return PAGE_STALE;
    }
    head = PyList_GET_ITEM(heads, slot);
    if (cols && PyUnicode_CheckExact(head)) {
        for (j = 0; j < width; j++) {
            int pos = j == 0 ? p->key_pos : p->positions[j - 1];
            if (j == 0 && !p->key_var) {
                continue;
            }
            if (pos == p->key_pos) {
                out[j] = shim_py_to_tcl(head);
                rc = out[j] ? 0 : -1;
            } else if (pos < 0 || pos >= ncols) {
                continue;
            } else {
                rc = shim_column_value(&cols[pos], slot, &out[j]);
            }
            if (rc == SHIM_COLUMN_MISS) {
                break;          /* read the whole row in Python */
            }
            if (rc != 0) {
                return -1;
            }
            if (out[j]) {
                Tcl_IncrRefCount(out[j]);
            }
        }
        if (j == width) {
            return 0;
        }
        release_chunk(out, width);
    }
    if (head == Py_None) {
        return PAGE_STALE;      /* freed: cannot be with the same fseq */
    }
    row = PyLong_FromSsize_t(slot);
    if (row) {
        Py_SETREF(row, PyObject_CallMethodObjArgs(PyTuple_GET_ITEM(p->check, 0), n_row_at, row,
                                                  PyTuple_GET_ITEM(p->check, 2), NULL));
    }
    if (!row) {
        return -1;
    }
    rc = row == Py_None ? PAGE_STALE : convert_tuple(p, row, out);
    Py_DECREF(row);
    return rc;
}

/* Ask for every cache line the page's slots will be read from, before reading
 * any: the heap entries and the bound fields' values and null flags, then the
 * heads (the keys) those entries point to.  The slots of a page are random
 * in a big table, each line a cache miss; asked for together, the misses
 * overlap instead of coming one after the other (as rowget.c does for one
 * row).  Reads nothing it does not check the bounds of.  GIL held. */
static void prefetch_page(Plan *p, PyObject *heads, const ShimColumn *cols, Py_ssize_t ncols)
{
    Py_ssize_t total = PyList_GET_SIZE(p->rows), nh = PyList_GET_SIZE(heads), r;
    int j;

    for (r = 0; r < total; r++) {
        PyObject *item = PyList_GET_ITEM(p->rows, r);
        Py_ssize_t slot;
        if (!PyLong_CheckExact(item) || (slot = PyLong_AsSsize_t(item)) < 0 || slot >= nh) {
            PyErr_Clear();
            continue;
        }
        __builtin_prefetch(&PyList_GET_ITEM(heads, slot));
        for (j = 0; j < p->nf; j++) {
            int pos = p->positions[j];
            const ShimColumn *c = pos >= 0 && pos < ncols ? &cols[pos] : NULL;
            if (c && c->kind != SHIM_COLUMN_KEY && c->kind != SHIM_COLUMN_LIST && slot < c->len) {
                __builtin_prefetch(c->val + slot * c->size);
                __builtin_prefetch(c->nul + slot);
            }
        }
    }
    for (r = 0; r < total; r++) {
        PyObject *item = PyList_GET_ITEM(p->rows, r);
        Py_ssize_t slot;
        if (PyLong_CheckExact(item) && (slot = PyLong_AsSsize_t(item)) >= 0 && slot < nh) {
            __builtin_prefetch(PyList_GET_ITEM(heads, slot));
        }
        PyErr_Clear();
    }
}

/* Convert the whole page (rows, tuples and slots) into vals (total * width,
 * all NULL).  GIL held.  0, PAGE_STALE (store.fseq is not the page's), or -1
 * (Python error); vals released unless 0. */
static int convert_page(Plan *p, Tcl_Obj **vals)
{
    PyObject *store = PyTuple_GET_ITEM(p->check, 0), *heads = NULL, *columns = NULL;
    PyObject *arrays = NULL, *views;
    Py_ssize_t total = PyList_GET_SIZE(p->rows), r, ncols = 0;
    int width = p->nf + 1, rc = PAGE_STALE, usable = 0;
    long long f = PyLong_AsLongLong(PyTuple_GET_ITEM(p->check, 1));
    ShimColumn small[16], *cols = small;

    if ((f == -1 && PyErr_Occurred()) || page_names() != 0) {
        return -1;
    }
    if ((f & 1) || fseq_of(store) != f) {
        return PAGE_STALE;
    }
    heads = PyObject_GetAttr(store, n_rows);
    columns = heads ? PyObject_GetAttr(store, n_columns) : NULL;
    arrays = columns ? PyObject_GetAttr(columns, n_arrays) : NULL;
    if (!arrays || !PyList_CheckExact(heads)) {
        PyErr_Clear();
        goto out;
    }
    if (PyTuple_CheckExact(arrays) && PyTuple_GET_SIZE(arrays) >= 4) {
        views = PyTuple_GET_ITEM(arrays, 3);
        if (PyTuple_CheckExact(views) && PyTuple_GET_SIZE(views) + 1 > 16) {
            cols = PyMem_Malloc(sizeof(ShimColumn) * (PyTuple_GET_SIZE(views) + 1));
        }
        usable = cols && shim_columns_at(views, p->key_pos, cols,
                                         PyTuple_CheckExact(views) ? PyTuple_GET_SIZE(views) + 1 : 0,
                                         &ncols);
        if (!cols) {
            cols = small;       /* no memory: every slot through row_at */
        }
    }
    if (usable) {
        prefetch_page(p, heads, cols, ncols);
    }
    for (r = 0; r < total; r++) {
        PyObject *item = PyList_GET_ITEM(p->rows, r);
        Tcl_Obj **out = vals + r * width;
        if (PyLong_CheckExact(item)) {
            Py_ssize_t slot = PyLong_AsSsize_t(item);
            if (slot == -1 && PyErr_Occurred()) {
                rc = -1;
            } else {
                rc = convert_slot(p, heads, usable ? cols : NULL, ncols, slot, out);
            }
        } else {
            rc = convert_tuple(p, item, out);
        }
        if (rc != 0) {
            release_chunk(vals, (r + 1) * width);
            goto out;
        }
    }
    rc = 0;
    if (fseq_of(store) != f) {      /* row_at ran Python: a freeze may have begun */
        release_chunk(vals, total * width);
        rc = PAGE_STALE;
    }
out:
    if (cols != small) {
        PyMem_Free(cols);
    }
    Py_XDECREF(heads);
    Py_XDECREF(columns);
    Py_XDECREF(arrays);
    return rc;
}

/* The page of p converted (a new vals array), after redo() if its slots
 * could not be trusted (then p's count and rows are redo's and p->check
 * NULL: the caller converts them in chunks).  GIL held.  0, or -1 (Python
 * error). */
static int page_values(Plan *p, Tcl_Obj ***valsp)
{
    Py_ssize_t total = PyList_GET_SIZE(p->rows);
    Tcl_Obj **vals = calloc((size_t)(total ? total : 1) * (p->nf + 1), sizeof(Tcl_Obj *));
    PyObject *again, *rows;
    int rc;

    *valsp = NULL;
    if (!vals) {
        PyErr_NoMemory();
        return -1;
    }
    rc = convert_page(p, vals);
    if (rc == 0) {
        *valsp = vals;
        return 0;
    }
    free(vals);
    if (rc < 0) {
        return -1;
    }
    again = PyObject_CallNoArgs(PyTuple_GET_ITEM(p->check, 3));
    if (!again) {
        return -1;
    }
    if (!PyArg_ParseTuple(again, "nO!", &p->count, &PyList_Type, &rows)) {
        Py_DECREF(again);
        return -1;
    }
    Py_INCREF(rows);
    Py_SETREF(p->rows, rows);
    Py_DECREF(again);
    p->check = NULL;
    return 0;
}

/* The dict the -array_get variable holds, if the row v can be put into it in
 * place: no one else holds it (unshared: the body kept no reference) and its
 * keys are exactly the field name objects this row puts, in order (the dict
 * bound for the previous row, or one the body only changed values of).  Then
 * putting the row's values gives the same dict as a new one would (same keys,
 * same order), without making a hash table per row and freeing the last one.
 * Else NULL. */
static Tcl_Obj *reusable_dict(Tcl_Interp *interp, Plan *p, Tcl_Obj **v)
{
    static const Tcl_ObjType *dict_type;
    Tcl_Obj *old = Tcl_ObjGetVar2(interp, p->bind_var, NULL, 0), *k;
    Tcl_DictSearch search;
    int done, j;

    if (!dict_type) {
        dict_type = Tcl_GetObjType("dict");
    }
    if (!old || Tcl_IsShared(old) || !dict_type || old->typePtr != dict_type
            || Tcl_DictObjFirst(NULL, old, &search, &k, NULL, &done) != TCL_OK) {
        return NULL;
    }
    for (j = 0; j < p->nf; j++) {
        if (!v[j + 1] && p->bind == O_ARRAY_GET) {
            continue;
        }
        if (done || k != p->names[j]) {
            break;
        }
        Tcl_DictObjNext(&search, &k, NULL, &done);
    }
    Tcl_DictObjDone(&search);
    return j == p->nf && done ? old : NULL;
}

/* Bind one row's values (no GIL needed). */
static int bind_row(Tcl_Interp *interp, Plan *p, Tcl_Obj **v)
{
    Tcl_Obj *value;
    int j;

    if (p->key_var && !Tcl_ObjSetVar2(interp, p->key_var, NULL, v[0] ? v[0] : p->empty,
                                      TCL_LEAVE_ERR_MSG)) {
        return var_error(interp);
    }
    if (p->bind == NO_BIND) {
        return TCL_OK;
    }
    if (p->bind == O_ARRAY) {
        for (j = 0; j < p->nf; j++) {
            if (v[j + 1]) {
                if (!Tcl_ObjSetVar2(interp, p->bind_var, p->names[j], v[j + 1], TCL_LEAVE_ERR_MSG)) {
                    return var_error(interp);
                }
            } else {
                Tcl_UnsetVar2(interp, Tcl_GetString(p->bind_var), Tcl_GetString(p->names[j]), 0);
            }
        }
        return TCL_OK;
    }
    if (p->bind == O_GET) {
        for (j = 0; j < p->nf; j++) {
            p->scratch[j] = v[j + 1] ? v[j + 1] : p->empty;
        }
        value = Tcl_NewListObj(p->nf, p->scratch);     /* one allocation, no appends */
    } else {
        /* Name/value pairs as a dict: `dict get` then needs no conversion, and
         * its string is the same pair list. */
        if (!(value = reusable_dict(interp, p, v))) {
            value = Tcl_NewDictObj();
        }
        for (j = 0; j < p->nf; j++) {
            Tcl_Obj *x = v[j + 1];
            if (x || p->bind == O_ARRAY_GET_NULLS) {
                Tcl_DictObjPut(NULL, value, p->names[j], x ? x : p->empty);
            }
        }
    }
    if (!Tcl_ObjSetVar2(interp, p->bind_var, NULL, value, TCL_LEAVE_ERR_MSG)) {
        return var_error(interp);
    }
    return TCL_OK;
}

/* Bind the n converted rows of vals in turn and run the body after each
 * (no GIL needed); a Tcl code (TCL_BREAK: the body said break), *visited
 * counted up. */
static int bind_rows(Tcl_Interp *interp, Plan *p, Tcl_Obj *cmd, Tcl_Obj **vals, Py_ssize_t n,
                     Py_ssize_t *visited)
{
    int width = p->nf + 1, code = TCL_OK;
    Py_ssize_t r;

    for (r = 0; r < n; r++) {
        code = bind_row(interp, p, vals + r * width);
        if (code != TCL_OK) {
            return code;
        }
        if (!p->body) {
            (*visited)++;
            continue;
        }
        code = Tcl_EvalObjEx(interp, p->body, 0);
        if (code == TCL_OK || code == TCL_CONTINUE) {
            code = TCL_OK;
            (*visited)++;
        } else if (code == TCL_BREAK) {
            (*visited)++;
            return code;
        } else {
            if (code == TCL_ERROR) {
                Tcl_AppendObjToErrorInfo(interp, Tcl_ObjPrintf("\n    (\"%s search\" body line %d)",
                                         Tcl_GetString(cmd), Tcl_GetErrorLine(interp)));
            }
            return code;
        }
    }
    return code;
}

/* Run the loop with the GIL held on entry and exit; returns a Tcl code and
 * sets *visited / *completed.  A page with slots (p->check) is converted
 * whole first, tuple rows a chunk at a time. */
static int run_rows(Tcl_Interp *interp, Plan *p, Tcl_Obj *cmd, Py_ssize_t *visited, int *completed)
{
    Py_ssize_t total, start;
    int width = p->nf + 1;
    Tcl_Obj **vals = NULL;
    int code = TCL_OK;

    *visited = 0;
    *completed = 0;
    if (p->check) {
        if (page_values(p, &vals) != 0) {
            return shim_python_error(interp);
        }
    }
    total = PyList_GET_SIZE(p->rows);
    if (vals) {
        PyThreadState *ts = PyEval_SaveThread();
        code = bind_rows(interp, p, cmd, vals, total, visited);
        release_chunk(vals, total * width);
        PyEval_RestoreThread(ts);
    } else if (!(vals = calloc((size_t)CHUNK * width, sizeof(Tcl_Obj *)))) {
        PyErr_NoMemory();
        return shim_python_error(interp);
    }
    for (start = 0; !p->check && start < total && code == TCL_OK; start += CHUNK) {
        int n = total - start < CHUNK ? (int)(total - start) : CHUNK;
        PyThreadState *ts;
        if (convert_chunk(p, start, n, vals) != 0) {
            code = shim_python_error(interp);
            break;
        }
        ts = PyEval_SaveThread();
        code = bind_rows(interp, p, cmd, vals, n, visited);
        release_chunk(vals, (Py_ssize_t)n * width);
        PyEval_RestoreThread(ts);
    }
    free(vals);
    if (code == TCL_BREAK) {
        code = TCL_OK;
    } else if (code == TCL_OK) {
        *completed = 1;
    }
    return code;
}

int shim_search(ShimInterp *si, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[])
{
    PyGILState_STATE g;
    PyObject *r;
    Options o = {0};
    Plan p = {0};
    Py_ssize_t visited, result;
    int code, completed;

    o.bind = NO_BIND;
    if (parse_options(interp, objc - 2, objv + 2, &o) != TCL_OK) {
        return TCL_ERROR;
    }
    g = shim_gil_enter();
    r = call_search(si, &o);
    if (!r) {
        code = shim_python_error(interp);
        goto out;
    }
    if (PyLong_Check(r)) {
        Tcl_SetObjResult(interp, Tcl_NewWideIntObj((Tcl_WideInt)PyLong_AsLongLong(r)));
        code = TCL_OK;
        goto out;
    }
    if (plan_from_tuple(&p, r, &o) != 0) {
        code = shim_python_error(interp);
        goto out;
    }
    code = run_rows(interp, &p, objv[0], &visited, &completed);
    result = completed ? p.count : visited;
    if (p.finish) {
        PyObject *f = PyObject_CallFunction(p.finish, "nO", visited,
                                            code == TCL_OK ? Py_True : Py_False);
        if (!f && code == TCL_OK) {
            code = shim_python_error(interp);
        } else if (f && code == TCL_OK) {
            result = PyLong_AsSsize_t(f);
        }
        PyErr_Clear();
        Py_XDECREF(f);
    }
    if (code == TCL_OK) {
        Tcl_SetObjResult(interp, Tcl_NewWideIntObj((Tcl_WideInt)result));
    }
out:
    plan_free(&p);
    Py_XDECREF(r);
    shim_gil_leave(g);
    return code;
}
