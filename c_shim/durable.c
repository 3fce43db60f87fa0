/*
 * Waiting for a durable commit without the GIL.
 *
 * A write command whose commit still waits for its log flush gets a
 * DurableWait (an int subclass: the commit's CSN) back from its Session method
 * instead of the method blocking on a Python lock.  The command then gives the
 * GIL back and sleeps here, on its ShimInterp's condition variable, until the
 * flushing thread calls durable(capsule, csn, ok) (the ticket's waker, with the
 * GIL, after the commit was published).  Why: a thread woken from a Python lock
 * must take the GIL again before it can return to Tcl, and on 2 cores each
 * such hand-off cost about as much as the commit's own Python; here the woken
 * thread goes straight back to Tcl (docs/decisions.md has the figures).
 *
 * The waker only notes the commit in the ShimInterp (under one process-wide
 * mutex) and returns wake_all: the flusher calls that once after the wakers of
 * its whole group ran, and one broadcast wakes every waiting thread (8 signals
 * cost the flusher, holding the GIL, 40-48 us on this machine; a broadcast
 * 10-21 us).  Each thread then checks its own commit and sleeps on if it is
 * not the one told.
 *
 * A waker may be called more than once for one commit, and late for an older
 * one.  The Session numbers its waits (a sequence that only grows, whatever
 * store is open: CSNs start anew in another store) and binds the number into
 * each commit's waker; the interp's thread waits for one commit at a time, so
 * the condition is "the highest number told reaches mine".
 */
#include "shim.h"

#include <pthread.h>
#include <string.h>

#define CAPSULE_NAME "aerostore.ShimInterp"

static PyTypeObject *durable_wait_type;   /* session.DurableWait */
static pthread_mutex_t durable_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t durable_cond = PTHREAD_COND_INITIALIZER;
static PyObject *wake_all_fn;             /* the PyCFunction wake_all */

static PyObject *wake_all(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pthread_cond_broadcast(&durable_cond);
    Py_RETURN_NONE;
}

static PyMethodDef wake_all_def = {
    "wake_all", wake_all, METH_NOARGS, "wake_all(): wake every Tcl thread waiting for a commit"
};

int shim_durable_init(void)
{
    PyObject *t;

    wake_all_fn = PyCFunction_New(&wake_all_def, NULL);      /* kept for the process's life */
    if (!wake_all_fn) {
        return -1;
    }
    t = PyObject_GetAttrString(shim_session_module, "DurableWait");
    if (!t) {
        return -1;
    }
    if (!PyType_Check(t)) {
        Py_DECREF(t);
        PyErr_SetString(PyExc_TypeError, "session.DurableWait is not a type");
        return -1;
    }
    durable_wait_type = (PyTypeObject *)t;     /* kept for the process's life */
    return 0;
}


int shim_is_durable_wait(PyObject *r, unsigned long long *seq)
{
    if (!durable_wait_type || Py_TYPE(r) != durable_wait_type) {
        return 0;
    }
    *seq = PyLong_AsUnsignedLongLong(r);
    if (*seq == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;      /* not reached: the numbers are positive ints */
    }
    return 1;
}

int shim_wait_durable(ShimInterp *si, unsigned long long seq)
{
    int ok;

    pthread_mutex_lock(&durable_lock);
    while (si->durable_seq < seq) {
        pthread_cond_wait(&durable_cond, &durable_lock);
    }
    /* A later number than ours cannot be told before ours finished; if it
     * were, ask Python (ok 0: the command calls t_durable_failed, which waits). */
    ok = si->durable_seq == seq && si->durable_ok;
    pthread_mutex_unlock(&durable_lock);
    return ok;
}

/* durable(capsule, seq, csn, ok) -> wake_all: the commit the capsule's interp
 * waits for as number seq (its CSN csn, unused here) is finished (ok: durable
 * and published; else failed).  GIL held; notes it (a mutex held for a few
 * instructions) and returns the wake-up for the flusher to call once
 * (walwriter._finish_all). */
static PyObject *durable(PyObject *self, PyObject *args)
{
    PyObject *capsule;
    unsigned long long seq, csn;
    int ok;
    ShimInterp *si;

    (void)self;
    if (!PyArg_ParseTuple(args, "OKKp", &capsule, &seq, &csn, &ok)) {
        return NULL;
    }
    (void)csn;
    si = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (!si) {
        return NULL;
    }
    pthread_mutex_lock(&durable_lock);
    if (seq >= si->durable_seq) {
        si->durable_seq = seq;
        si->durable_ok = ok;
    }
    pthread_mutex_unlock(&durable_lock);
    Py_INCREF(wake_all_fn);
    return wake_all_fn;
}

PyMethodDef shim_durable_def = {
    "durable", durable, METH_VARARGS,
    "durable(capsule, seq, csn, ok) -> wake_all: note that the interp's wait seq is over"
};

/* ---- combining write commands across Tcl threads -------------------------
 *
 * Each Tcl thread that runs `FlightState set` would otherwise take the GIL
 * for its own commit: a hand-off to a sleeping thread per commit, and on
 * this machine a hand-off costs about as much as the commit itself (a thread
 * woken on the other core takes 25-50 us to run).  Instead (flat combining),
 * a thread queues its command here; the first thread to find no combiner
 * running becomes the combiner: it takes the GIL once, runs every queued
 * command (each its own commit, in the order queued; up to MAX_RUN), gives
 * the role up, and flushes their log records as one group in its own thread
 * (Session.c_done, which also prunes once for the group).  The others sleep
 * here until their command has run and, for a synchronous commit, until it
 * is durable (the waker above).  Arguments are
 * read from the Tcl objects by their own thread (strings made there) and
 * turned into Python values by the combiner.
 */

#define MAX_RUN 256                /* commands one combiner runs before passing the role on */

typedef struct CArg {
    int is_int;
    Tcl_WideInt w;
    const char *s;
    int len;
} CArg;

typedef struct Request {
    struct Request *next;
    ShimInterp *si;
    const char *method;
    int n;
    CArg args[SHIM_MAX_COMBINED_ARGS];
    int done;                      /* the command ran (under durable_lock) */
    unsigned long long seq;        /* its DurableWait number, or 0 */
    PyObject *result;              /* its answer (new reference), or NULL: */
    PyObject *exc_type, *exc_value, *exc_tb;   /* the exception it raised */
} Request;

static Request *qhead, *qtail;     /* under durable_lock */
static int combining;

static void run_request(Request *r)   /* GIL held */
{
    PyObject *stack[2 + SHIM_MAX_COMBINED_ARGS];
    int i;

    for (i = 0; i < r->n; i++) {
        CArg *a = &r->args[i];
        stack[2 + i] = a->is_int ? PyLong_FromLongLong((long long)a->w)
                                 : shim_str_from_utf(a->s, a->len);
        if (!stack[2 + i]) {
            break;
        }
    }
    r->result = i == r->n ? shim_call_stack(r->si, r->method, stack, r->n) : NULL;
    shim_decref_args(i, stack + 2);
    if (!r->result) {
        PyErr_Fetch(&r->exc_type, &r->exc_value, &r->exc_tb);
    } else if (shim_is_durable_wait(r->result, &r->seq)) {
        Py_CLEAR(r->result);
    }
}

/* The combiner's work; called with `combining` claimed, GIL not held.  It
 * gives the role up as soon as the queue is empty (or after MAX_RUN
 * commands), before it flushes the group: a command that arrives during the
 * flush's fdatasync is run by a new combiner meanwhile (the GIL is free then),
 * and its commit goes into the next flush. */
static void combine(ShimInterp *self)
{
    PyGILState_STATE g = shim_gil_enter();
    int run = 0, unflushed = 0, wake = 0;

    for (;;) {
        Request *r = NULL;

        pthread_mutex_lock(&durable_lock);
        if (run < MAX_RUN && qhead) {
            r = qhead;
            qhead = r->next;
            if (!qhead) {
                qtail = NULL;
            }
        }
        if (!r) {
            combining = 0;             /* the next command to come combines */
            wake |= qhead != NULL;     /* MAX_RUN: a queued one must take over */
        }
        pthread_mutex_unlock(&durable_lock);
        if (!r) {
            break;
        }
        run_request(r);
        run++;
        unflushed |= r->seq != 0;
        wake |= r->seq == 0;           /* done, with nothing to wait for */
        pthread_mutex_lock(&durable_lock);
        r->done = 1;
        pthread_mutex_unlock(&durable_lock);
    }
    if (wake) {
        pthread_cond_broadcast(&durable_cond);
    }
    if (run && self->session) {
        /* The group's log records, flushed here (no hand-off to the log's
         * thread; the waker wakes their threads once they are durable), and
         * one prune of the old versions the group's commits left. */
        PyObject *f = PyObject_CallMethod(self->session, "c_done", "O",
                                          unflushed ? Py_True : Py_False);
        if (!f) {
            PyErr_Print();     /* not reached: a failed flush is told through the tickets */
        }
        Py_XDECREF(f);
    }
    shim_gil_leave(g);
}

int shim_combined_call(ShimInterp *si, Tcl_Interp *interp, const char *method,
                       int n, Tcl_Obj *const objv[])
{
    Request req;
    int i, code;

    memset(&req, 0, sizeof req);
    req.si = si;
    req.method = method;
    req.n = n;
    for (i = 0; i < n; i++) {          /* read in this thread: the objects are its own */
        Tcl_Obj *obj = objv[i];
        CArg *a = &req.args[i];
        if (obj->bytes == NULL && shim_is_pure_int(obj, &a->w)) {
            a->is_int = 1;
        } else {
            a->s = Tcl_GetStringFromObj(obj, &a->len);
        }
    }
    pthread_mutex_lock(&durable_lock);
    if (qtail) {
        qtail->next = &req;
    } else {
        qhead = &req;
    }
    qtail = &req;
    for (;;) {
        if (req.done && (req.seq == 0 || si->durable_seq >= req.seq)) {
            break;
        }
        if (!req.done && !combining) {
            combining = 1;
            pthread_mutex_unlock(&durable_lock);
            combine(si);
            pthread_mutex_lock(&durable_lock);
            continue;
        }
        pthread_cond_wait(&durable_cond, &durable_lock);
    }
    code = req.seq == 0 || (si->durable_seq == req.seq && si->durable_ok);
    pthread_mutex_unlock(&durable_lock);
    if (req.seq != 0 && code && !req.result) {
        Tcl_ResetResult(interp);      /* durable and published: the common case, no GIL */
        return TCL_OK;
    }
    {
        PyGILState_STATE g = shim_gil_enter();
        PyObject *r = req.result;
        if (req.seq != 0 && !code) {
            r = shim_call(si, "t_durable_failed", 0, NULL);
        } else if (!r) {
            PyErr_Restore(req.exc_type, req.exc_value, req.exc_tb);
        }
        code = shim_set_result(interp, r);
        shim_gil_leave(g);
    }
    return code;
}
