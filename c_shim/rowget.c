/*
 * `FlightState get key`: the settled row read in C, without running Python.
 *
 * The hottest command.  The general path calls session.t_get(key) and
 * Table.get in Python (two frames, most of a call's instructions).  Here, with
 * the GIL held and no Python code run, the shim reads what Table.get's first
 * lines read (aerostore/database.py) and answers only when they decide:
 *
 *   the interp has no aerostore::transaction open (the session's _txn_table
 *   is None); a store is open (state.fast_get: the autocommit table's
 *   TableStore and Database, the key's position); the key is a str;
 *   store.slots[key] is a slot; database._closed is False; store.rows[slot] is a
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
 * Cost per call: O(1): the session's slot and three attribute reads, each read on
 * every call (a reload that rebinds `rows`/`slots`, a close or a reopen are
 * seen at once; nothing is cached here across calls), and one key lookup.
 */
#include "shim.h"

#include <structmember.h>
#include <string.h>

static PyObject *state_dict;                     /* aerostore.tclbridge.state.__dict__ */
static PyObject *n_fast_get, *n_txn_table, *n_slots, *n_rows, *n_closed;
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
        if (n_fast_get && n_txn_table && n_slots && n_rows && n_closed) {
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
    PyObject *v = PyObject_GetAttr(obj, name);

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

int shim_get_row(ShimInterp *si, Tcl_Interp *interp, Tcl_Obj *key_obj, PyObject *key)
{
    PyObject *fast, *txn = NULL, *slots = NULL, *rows = NULL, *closed = NULL, *slot, *head;
    Py_ssize_t kp, i;
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
    kp = PyLong_AsSsize_t(PyTuple_GET_ITEM(fast, 2));
    if (kp < 0 || (txn = txn_table(si->session)) != Py_None
            || !(slots = attr(PyTuple_GET_ITEM(fast, 0), n_slots)) || !PyDict_CheckExact(slots)
            || !(rows = attr(PyTuple_GET_ITEM(fast, 0), n_rows)) || !PyList_CheckExact(rows)
            || (closed = attr(PyTuple_GET_ITEM(fast, 1), n_closed)) != Py_False) {
        PyErr_Clear();
        goto out;
    }
    slot = PyDict_GetItemWithError(slots, key);      /* str hash and compare: no Python code */
    if (!slot || !PyLong_CheckExact(slot)) {
        PyErr_Clear();
        goto out;
    }
    i = PyLong_AsSsize_t(slot);
    if (i < 0 || i >= PyList_GET_SIZE(rows)) {
        PyErr_Clear();
        goto out;
    }
    head = PyList_GET_ITEM(rows, i);
    if (!PyTuple_CheckExact(head) || kp >= PyTuple_GET_SIZE(head)) {
        goto out;
    }
    if (PyTuple_GET_ITEM(head, kp) != key) {
        /* Equal exact strs have the same kind and length (CPython's canonical
         * form), so their data compare as bytes, as str == does. */
        PyObject *k = PyTuple_GET_ITEM(head, kp);
        if (!PyUnicode_CheckExact(k) || PyUnicode_GET_LENGTH(k) != PyUnicode_GET_LENGTH(key)
                || PyUnicode_KIND(k) != PyUnicode_KIND(key)
                || memcmp(PyUnicode_DATA(k), PyUnicode_DATA(key),
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
    Py_INCREF(head);             /* converting runs no Python code, but hold it anyway */
    res = shim_items_to_tcl(((PyTupleObject *)head)->ob_item, PyTuple_GET_SIZE(head), kp, given);
    Py_DECREF(head);
    if (res) {
        Tcl_SetObjResult(interp, res);
        code = TCL_OK;
    } else {
        code = shim_python_error(interp);
    }
out:
    Py_XDECREF(txn);
    Py_XDECREF(slots);
    Py_XDECREF(rows);
    Py_XDECREF(closed);
    return code;
}
