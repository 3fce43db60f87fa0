/*
 * Watch callbacks, delivered on the thread of the interpreter that asked.
 *
 * The engine calls a subscription's callback on the committing (publishing)
 * thread, in commit order.  The Session's callback calls post_event(capsule,
 * (watch, words)) -- defined here -- which queues a Tcl event on the interp's
 * thread (Tcl_ThreadQueueEvent + Tcl_ThreadAlert) and returns at once.  That
 * thread's event loop (vwait, update) then runs `{*}watch.callback op key
 * {field value ...}` at global level; an error in it is a background error.
 * The callback is read when the event runs, not when it was queued: unwatch
 * sets it to None, and the events of that watch still queued are dropped, as
 * are events that arrive after the interp was deleted.
 *
 * call_tcl(capsule, words) is the synchronous counterpart, for callbacks that
 * run inside a command on the interp's own thread (ingest_file -progress): it
 * runs the command at global level with the GIL released; an error in it is a
 * background error too, so the command that called it goes on.
 */
#include "shim.h"

#define CAPSULE_NAME "aerostore.ShimInterp"

typedef struct WatchEvent {
    Tcl_Event header;           /* must be first */
    ShimInterp *si;             /* a reference */
    PyObject *payload;          /* (watch, [op, key, pairs]) */
} WatchEvent;

static void capsule_destroyed(PyObject *capsule)
{
    shim_interp_unref(PyCapsule_GetPointer(capsule, CAPSULE_NAME));
}

PyObject *shim_interp_capsule(ShimInterp *si)
{
    PyObject *c = PyCapsule_New(si, CAPSULE_NAME, capsule_destroyed);
    if (c) {
        shim_interp_ref(si);
    }
    return c;
}

static int deliver(Tcl_Event *ev, int flags)
{
    WatchEvent *we = (WatchEvent *)ev;
    ShimInterp *si = we->si;
    Tcl_Obj *cmd = NULL, *tail = NULL;

    if (!(flags & TCL_FILE_EVENTS)) {
        return 0;               /* not now: stays queued */
    }
    if (shim_python_alive()) {
        PyGILState_STATE g = shim_gil_enter();
        if (si->alive) {
            /* None once the watch ended: the event is dropped. */
            PyObject *callback = PyObject_GetAttrString(PyTuple_GET_ITEM(we->payload, 0), "callback");
            if (callback && callback != Py_None) {
                cmd = shim_py_to_tcl(callback);
                tail = cmd ? shim_py_to_tcl(PyTuple_GET_ITEM(we->payload, 1)) : NULL;
            }
            if (PyErr_Occurred()) {
                PyErr_WriteUnraisable(we->payload);
            }
            Py_XDECREF(callback);
        }
        Py_DECREF(we->payload);
        shim_gil_leave(g);
    }
    if (cmd) {
        Tcl_IncrRefCount(cmd);
    }
    if (cmd && tail) {
        Tcl_Interp *interp = si->interp;
        Tcl_Preserve(interp);
        if (Tcl_ListObjAppendList(interp, cmd, tail) != TCL_OK
                || Tcl_EvalObjEx(interp, cmd, TCL_EVAL_GLOBAL) != TCL_OK) {
            Tcl_AddErrorInfo(interp, "\n    (aerostore watch callback)");
            Tcl_BackgroundException(interp, TCL_ERROR);
        }
        Tcl_Release(interp);
    } else if (tail) {
        Tcl_IncrRefCount(tail);
        Tcl_DecrRefCount(tail);
    }
    if (cmd) {
        Tcl_DecrRefCount(cmd);
    }
    shim_interp_unref(si);
    return 1;
}

static PyObject *post_event(PyObject *self, PyObject *args)
{
    PyObject *capsule, *payload;
    ShimInterp *si;
    WatchEvent *we;

    (void)self;
    if (!PyArg_ParseTuple(args, "OO!", &capsule, &PyTuple_Type, &payload)) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(payload) != 2) {
        PyErr_SetString(PyExc_ValueError, "post_event: payload must be (watch, words)");
        return NULL;
    }
    si = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (!si) {
        return NULL;
    }
    if (!si->alive) {
        Py_RETURN_FALSE;
    }
    we = (WatchEvent *)ckalloc(sizeof *we);
    we->header.proc = deliver;
    we->header.nextPtr = NULL;
    we->si = si;
    we->payload = payload;
    Py_INCREF(payload);
    shim_interp_ref(si);
    Tcl_ThreadQueueEvent(si->thread, &we->header, TCL_QUEUE_TAIL);
    Tcl_ThreadAlert(si->thread);
    Py_RETURN_TRUE;
}

static PyObject *call_tcl(PyObject *self, PyObject *args)
{
    PyObject *capsule, *words;
    ShimInterp *si;
    Tcl_Obj *cmd;
    PyThreadState *ts;

    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &capsule, &words)) {
        return NULL;
    }
    si = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (!si) {
        return NULL;
    }
    if (!si->alive || Tcl_GetCurrentThread() != si->thread) {
        PyErr_SetString(PyExc_RuntimeError, "call_tcl: not on the interpreter's thread");
        return NULL;
    }
    cmd = shim_py_to_tcl(words);
    if (!cmd) {
        return NULL;
    }
    Tcl_IncrRefCount(cmd);
    ts = PyEval_SaveThread();
    if (Tcl_EvalObjEx(si->interp, cmd, TCL_EVAL_GLOBAL) != TCL_OK) {
        Tcl_BackgroundException(si->interp, TCL_ERROR);
    }
    Tcl_ResetResult(si->interp);
    PyEval_RestoreThread(ts);
    Tcl_DecrRefCount(cmd);
    Py_RETURN_NONE;
}

PyMethodDef shim_call_tcl_def = {
    "call_tcl", call_tcl, METH_VARARGS,
    "call_tcl(capsule, words): run a command now, on the interp's thread (errors are background errors)."
};

PyMethodDef shim_post_event_def = {
    "post_event", post_event, METH_VARARGS,
    "post_event(capsule, (watch, [op, key, pairs])): run watch.callback on the interp's thread\n"
    "(nothing if it is None by then)."
};
