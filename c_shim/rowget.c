/*
 * `FlightState get key`: the settled row read in C, without running Python.
 *
 * The hottest command.  The general path calls session.t_get(key) and
 * Table.get in Python (two frames, most of a call's instructions).  Here, with
 * the GIL held and no Python code run, the shim reads what Table.get's first
 * lines read (aerostore/database.py) and answers only when they decide:
 *
 *   the interp has no aerostore::transaction open (the session's _txn_table
 *   is None); a store is open (state.fast_get: the autocommit table's store
 *   attributes, its database's attributes, the key's position); the key is a
 *   str; slots[key] is a slot; the database is not closed; rows[slot] is a
 *   plain tuple (a settled row: the latest version, visible to every
 *   snapshot) whose key field equals the key
 *
 * -> that tuple, converted to a Tcl list (the key's element is the argument's
 * own Tcl_Obj when that has the same bytes).  In every other case (a miss, a
 * version chain, a transaction, an int key, a closed store, a store with no
 * such attributes) shim_get_row answers SHIM_NOT_HANDLED and the caller takes
 * the general path, which applies the whole rule.  Both paths read under the
 * GIL and take no latch, so the answers are the same; tests/test_tcl_get.py
 * checks them against Table.get for every kind of row.
 *
 * Cost per call: O(1), a few dict lookups by interned names (the attribute
 * dicts are read on each call, so a reload that rebinds `rows`/`slots`, a
 * close or a reopen are seen at once; nothing is cached here across calls).
 */
#include "shim.h"

#include <string.h>

static PyObject *state_dict;                     /* aerostore.tclbridge.state.__dict__ */
static PyObject *n_fast_get, *n_txn_table, *n_slots, *n_rows, *n_closed;

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
        if (n_fast_get && n_txn_table && n_slots && n_rows && n_closed) {
            state_dict = PyModule_GetDict(state);
        }
    }
    if (!state_dict) {
        PyErr_Clear();           /* no fast path: every get takes the general one */
    }
}

PyObject *shim_attr_dict(PyObject *obj)
{
    PyObject *d = PyObject_GenericGetDict(obj, NULL);

    if (!d || !PyDict_CheckExact(d)) {
        PyErr_Clear();
        Py_XDECREF(d);
        return NULL;
    }
    return d;
}

/* d[name] for an interned str name (no Python code runs: str hash and
 * compare); NULL if missing, with no error set. */
static PyObject *lookup(PyObject *d, PyObject *name)
{
    PyObject *v = PyDict_GetItemWithError(d, name);

    if (!v) {
        PyErr_Clear();
    }
    return v;
}

int shim_get_row(ShimInterp *si, Tcl_Interp *interp, Tcl_Obj *key_obj, PyObject *key)
{
    PyObject *fast, *st, *db, *slots, *rows, *slot, *head;
    Py_ssize_t kp, i;
    Tcl_Obj *res, *given = NULL;

    if (!state_dict || !si->session_dict || !PyUnicode_CheckExact(key)
            || lookup(si->session_dict, n_txn_table) != Py_None) {
        return SHIM_NOT_HANDLED;
    }
    fast = lookup(state_dict, n_fast_get);
    if (!fast || !PyTuple_CheckExact(fast) || PyTuple_GET_SIZE(fast) != 3) {
        return SHIM_NOT_HANDLED;
    }
    st = PyTuple_GET_ITEM(fast, 0);
    db = PyTuple_GET_ITEM(fast, 1);
    kp = PyLong_AsSsize_t(PyTuple_GET_ITEM(fast, 2));
    if (kp < 0 || !PyDict_CheckExact(st) || !PyDict_CheckExact(db)) {
        PyErr_Clear();
        return SHIM_NOT_HANDLED;
    }
    slots = lookup(st, n_slots);
    rows = lookup(st, n_rows);
    if (!slots || !rows || !PyDict_CheckExact(slots) || !PyList_CheckExact(rows)
            || lookup(db, n_closed) != Py_False) {
        return SHIM_NOT_HANDLED;
    }
    slot = PyDict_GetItemWithError(slots, key);      /* str hash and compare: no Python code */
    if (!slot || !PyLong_CheckExact(slot)) {
        PyErr_Clear();
        return SHIM_NOT_HANDLED;
    }
    i = PyLong_AsSsize_t(slot);
    if (i < 0 || i >= PyList_GET_SIZE(rows)) {
        PyErr_Clear();
        return SHIM_NOT_HANDLED;
    }
    head = PyList_GET_ITEM(rows, i);
    if (!PyTuple_CheckExact(head) || kp >= PyTuple_GET_SIZE(head)) {
        return SHIM_NOT_HANDLED;
    }
    if (PyTuple_GET_ITEM(head, kp) != key) {
        PyObject *k = PyTuple_GET_ITEM(head, kp);
        if (!PyUnicode_CheckExact(k) || PyUnicode_Compare(k, key) != 0) {
            PyErr_Clear();
            return SHIM_NOT_HANDLED;
        }
    }
    if (PyUnicode_IS_ASCII(key)
            && !memchr(PyUnicode_DATA(key), 0, (size_t)PyUnicode_GET_LENGTH(key))) {
        /* The key's own Tcl value has exactly the bytes its conversion would
         * make: the list holds it instead of a copy (one object less to make
         * and free). */
        given = key_obj;
    }
    Py_INCREF(head);             /* converting runs no Python code, but hold it anyway */
    res = shim_items_to_tcl(((PyTupleObject *)head)->ob_item, PyTuple_GET_SIZE(head), kp, given);
    Py_DECREF(head);
    if (!res) {
        return shim_python_error(interp);
    }
    Tcl_SetObjResult(interp, res);
    return TCL_OK;
}
