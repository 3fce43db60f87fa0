/* _readgate.c: the process's read gate (_readgate.h has the layout and the
 * reader's side, aerostore/readgate.py the contract).  Compiled into the
 * aerostore._keymap extension: KeyMap calls it in C, and its functions are
 * that module's hold/release/changed/drain/stats. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sched.h>

#include "_readgate.h"

ReadGate rg_gate;

/* The objects the shim's view reads (a tuple), kept alive until the layout
 * moves on: then no reader reads them any more, and they are let go. */
static PyObject *rg_kept;

/* Wait until no reader is inside.  GIL held: a reader never needs it, and is
 * inside for about a microsecond (it may be descheduled there: yield). */
void rg_drain(void)
{
    if (__atomic_load_n(&rg_gate.readers, __ATOMIC_SEQ_CST) == 0) {
        return;
    }
    rg_gate.drains_waited++;
    while (__atomic_load_n(&rg_gate.readers, __ATOMIC_SEQ_CST) != 0) {
        sched_yield();
    }
}

void rg_hold(void)
{
    if (rg_gate.depth++ == 0) {
        __atomic_add_fetch(&rg_gate.seq, 1, __ATOMIC_SEQ_CST);      /* odd */
        rg_gate.holds++;
        rg_drain();
    }
}

void rg_release(void)
{
    if (rg_gate.depth > 0 && --rg_gate.depth == 0) {
        __atomic_add_fetch(&rg_gate.seq, 1, __ATOMIC_RELEASE);      /* even */
    }
}

void rg_changed(void)
{
    __atomic_add_fetch(&rg_gate.layout, 1, __ATOMIC_SEQ_CST);
    rg_drain();
    Py_CLEAR(rg_kept);      /* a closed store's arrays are not held by a stale view */
}

/* Keep refs (a new reference is taken) for a view of layout; 0 if the layout
 * has moved on already (the view must not be used), else 1.  GIL held. */
int rg_keep(PyObject *refs, uint64_t layout)
{
    PyObject *old;

    if (__atomic_load_n(&rg_gate.layout, __ATOMIC_SEQ_CST) != layout) {
        return 0;
    }
    old = rg_kept;
    Py_INCREF(refs);
    rg_kept = refs;
    if (old) {
        rg_drain();
        Py_DECREF(old);
    }
    return 1;
}

static PyObject *py_hold(PyObject *self, PyObject *unused)
{
    rg_hold();
    Py_RETURN_NONE;
}

static PyObject *py_release(PyObject *self, PyObject *unused)
{
    if (rg_gate.depth <= 0) {
        PyErr_SetString(PyExc_RuntimeError, "readgate.release() without hold()");
        return NULL;
    }
    rg_release();
    Py_RETURN_NONE;
}

static PyObject *py_changed(PyObject *self, PyObject *unused)
{
    rg_changed();
    Py_RETURN_NONE;
}

static PyObject *py_drain(PyObject *self, PyObject *unused)
{
    rg_drain();
    Py_RETURN_NONE;
}

static PyObject *py_stats(PyObject *self, PyObject *unused)
{
    return Py_BuildValue(
        "{s:K,s:K,s:L,s:l,s:K,s:K,s:K,s:K,s:K}",
        "seq", (unsigned long long)__atomic_load_n(&rg_gate.seq, __ATOMIC_RELAXED),
        "layout", (unsigned long long)__atomic_load_n(&rg_gate.layout, __ATOMIC_RELAXED),
        "readers", (long long)__atomic_load_n(&rg_gate.readers, __ATOMIC_RELAXED),
        "depth", rg_gate.depth,
        "holds", (unsigned long long)rg_gate.holds,
        "drains_waited", (unsigned long long)rg_gate.drains_waited,
        "answered", (unsigned long long)__atomic_load_n(&rg_gate.answered, __ATOMIC_RELAXED),
        "fell_back", (unsigned long long)__atomic_load_n(&rg_gate.fell_back, __ATOMIC_RELAXED),
        "waited", (unsigned long long)__atomic_load_n(&rg_gate.waited, __ATOMIC_RELAXED));
}

PyMethodDef rg_methods[] = {
    {"hold", py_hold, METH_NOARGS, "Readers without the GIL stay out until release()."},
    {"release", py_release, METH_NOARGS, "End the outermost hold()."},
    {"changed", py_changed, METH_NOARGS, "What readers start from was rebound: their views are stale."},
    {"drain", py_drain, METH_NOARGS, "Wait until no reader without the GIL is inside."},
    {"stats", py_stats, METH_NOARGS, "The gate's counters, a dict."},
    {NULL, NULL, 0, NULL},
};
