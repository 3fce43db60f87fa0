/*
 * Starting Python inside a Tcl process, and the GIL from Tcl threads.
 *
 * In tclsh nothing runs Python yet: we start it ourselves, before cffi would,
 * so that it finds the project's virtual environment whatever $PATH holds
 * (program_name = the sys.executable recorded at build time, or
 * $AEROSTORE_PYTHON), with Python's signal handlers off (Tcl owns signals).
 * Tcl's `load` opened us RTLD_LOCAL, which would hide libpython's symbols from
 * Python's own extension modules, so libpython is re-opened RTLD_GLOBAL first.
 * In a process that already runs Python (tkinter.Tcl()), that interpreter is
 * used as it is.
 *
 * Each Tcl thread gets one Python thread state on its first call and keeps it
 * until the thread exits: taking the GIL is then cheap, where making a thread
 * state per call would cost more than the rest of the call (docs/tcl.md,
 * PERFORMANCE: where the time of a call goes).
 */
#include "shim.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef AEROSTORE_PYTHON
#define AEROSTORE_PYTHON "python3"
#endif

PyObject *shim_session_module = NULL;

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static int started = 0;
static char *boot_error = NULL;     /* why start-up failed; kept for the process */

const char *aerostore_shim_path(void)
{
    static char path[PATH_MAX];
    Dl_info info;

    if (!path[0] && dladdr((void *)&aerostore_shim_path, &info) && info.dli_fname) {
        if (!realpath(info.dli_fname, path)) {
            snprintf(path, sizeof path, "%s", info.dli_fname);
        }
    }
    return path;
}

void aerostore_boot_failed(const char *message)
{
    free(boot_error);
    boot_error = strdup(message ? message : "unknown error");
}

int shim_python_alive(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsInitialized() && !Py_IsFinalizing();
#else
    return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

static void fail_from_python_exception(const char *what)
{
    /* GIL held, exception set: keep "what: Type: message" as the boot error. */
    PyObject *type, *value, *tb, *text = NULL;
    char buf[2048];

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value) {
        text = PyObject_Str(value);
    }
    snprintf(buf, sizeof buf, "%s: %s: %s", what,
             type ? ((PyTypeObject *)type)->tp_name : "error",
             text && PyUnicode_Check(text) ? PyUnicode_AsUTF8(text) : "?");
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    aerostore_boot_failed(buf);
}

static int start_interpreter(void)
{
    Dl_info info;
    PyConfig config;
    PyStatus status;
    const char *program = getenv("AEROSTORE_PYTHON");
    char buf[1024];

    if (Py_IsInitialized()) {
        return 0;
    }
    if (dladdr((void *)&Py_IsInitialized, &info) && info.dli_fname) {
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    }
    if (!program || !*program) {
        program = AEROSTORE_PYTHON;
    }
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    status = PyConfig_SetBytesString(&config, &config.program_name, program);
    if (!PyStatus_Exception(status)) {
        status = Py_InitializeFromConfig(&config);
    }
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        snprintf(buf, sizeof buf, "cannot start Python %s: %s", program,
                 status.err_msg ? status.err_msg : "unknown error");
        aerostore_boot_failed(buf);
        return -1;
    }
    PyEval_SaveThread();
    return 0;
}

static void import_bridge(void)
{
    PyGILState_STATE g = shim_gil_enter();
    PyMethodDef *defs[] = {&shim_split_list_def, &shim_post_event_def, &shim_call_tcl_def,
                           &shim_durable_def};
    PyObject *fns[4] = {NULL}, *r = NULL;
    int i, n = 0;

    shim_convert_init();
    shim_session_module = PyImport_ImportModule("aerostore.tclbridge.session");
    if (shim_session_module && shim_durable_init() == 0) {
        for (n = 0; n < 4 && (fns[n] = PyCFunction_New(defs[n], NULL)) != NULL; n++) {
        }
        if (n == 4) {
            r = PyObject_CallMethod(shim_session_module, "install_shim", "OOOO",
                                    fns[0], fns[1], fns[2], fns[3]);
        }
        if (r) {
            shim_get_init();
        }
    }
    if (!r) {
        fail_from_python_exception("cannot import aerostore.tclbridge.session");
        Py_CLEAR(shim_session_module);
    }
    Py_XDECREF(r);
    for (i = 0; i < n; i++) {
        Py_DECREF(fns[i]);
    }
    shim_gil_leave(g);
}

int shim_start(Tcl_Interp *interp)
{
    pthread_mutex_lock(&start_lock);
    if (!started && !boot_error && start_interpreter() == 0) {
        /* Calling an extern "Python" function runs cffi's embedding init code
         * (sys.path, the package beside this library) exactly once. */
        if (aerostore_py_boot() != 1) {
            if (!boot_error) {
                aerostore_boot_failed("Python start-up code failed (traceback on stderr)");
            }
        } else {
            import_bridge();
            started = boot_error == NULL;
        }
    }
    pthread_mutex_unlock(&start_lock);
    if (!started) {
        Tcl_SetObjResult(interp, Tcl_ObjPrintf("aerostore: %s", boot_error));
        Tcl_SetObjErrorCode(interp, Tcl_NewStringObj("AEROSTORE INIT", -1));
        return TCL_ERROR;
    }
    return TCL_OK;
}

/* ---- the GIL ------------------------------------------------------------ */

static void drop_thread_state(ClientData unused)
{
    /* Tcl thread exit: delete the thread state this thread made on first use. */
    PyThreadState *ts;

    (void)unused;
    if (!shim_python_alive()) {
        return;
    }
    ts = PyGILState_GetThisThreadState();
    if (ts) {
        PyEval_RestoreThread(ts);
        PyThreadState_Clear(ts);
        PyThreadState_DeleteCurrent();
    }
}

PyGILState_STATE shim_gil_enter(void)
{
    static __thread int has_state;     /* this thread has a Python thread state */

    if (!has_state && PyGILState_GetThisThreadState() == NULL) {
        /* First call from this thread: make its thread state and keep it
         * (the gilstate counter stays at 1 until drop_thread_state). */
        (void)PyGILState_Ensure();
        (void)PyEval_SaveThread();
        Tcl_CreateThreadExitHandler(drop_thread_state, NULL);
    }
    has_state = 1;
    return PyGILState_Ensure();
}

void shim_gil_leave(PyGILState_STATE state)
{
    PyGILState_Release(state);
}
