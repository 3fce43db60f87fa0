/*
 * Declarations shared by the C files of the Aerostore Tcl shim.
 *
 * The shim is one shared library, built by aerostore/tclbridge/build.py with
 * cffi in embedding mode.  Tcl loads it (`load $so Aerostore`); it starts Python
 * if the process has none, imports aerostore.tclbridge.session, and registers
 * the aerostore::* commands and the FlightState object command.  Each command
 * converts its Tcl arguments to Python values here, in C (CPython C API), calls
 * one method of the interp's Session object, and converts the answer back.
 *
 * Files: pystart.c (Python start-up, one thread state per Tcl thread),
 * convert.c (values and errors), options.c (option words and values, read
 * by Tcl), commands.c (Aerostore_Init and the commands),
 * search.c (the row loop of FlightState search), rowget.c (`FlightState get
 * key` read in C), events.c (watch callbacks delivered through Tcl's thread
 * event queue), durable.c (write commands combined across Tcl threads, and
 * their wait for the log flush, without the GIL).
 */
#ifndef AEROSTORE_SHIM_H
#define AEROSTORE_SHIM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <tcl.h>

#define SHIM_EXPORT __attribute__((visibility("default")))

/* cffi entry points (declared in build.py's cdef / embedding_api). */
int aerostore_py_boot(void);
const char *aerostore_shim_path(void);
void aerostore_boot_failed(const char *message);

/* ---- pystart.c ---------------------------------------------------------- */

/* Start Python and import the bridge once per process; TCL_ERROR with a
 * message in interp if that is impossible (the reason is kept for later calls). */
int shim_start(Tcl_Interp *interp);
/* Take / give back the GIL from any Tcl thread; the thread keeps one Python
 * thread state for its whole life (made on first use). */
PyGILState_STATE shim_gil_enter(void);
void shim_gil_leave(PyGILState_STATE state);
/* True while Python can still be called (not finalised or finalising). */
int shim_python_alive(void);
/* aerostore.tclbridge.session, imported by shim_start. */
extern PyObject *shim_session_module;

/* ---- convert.c ---------------------------------------------------------- */

void shim_convert_init(void);
/* Tcl's modified UTF-8 (NUL as c0 80, non-BMP as surrogate pairs) -> str. */
PyObject *shim_str_from_utf(const char *s, Py_ssize_t n);
/* A Tcl argument: a pure integer is an int, anything else (a double too) its str. */
PyObject *shim_arg_to_py(Tcl_Obj *obj);
/* True (and *w) if obj is a pure Tcl integer (no string form): such an
 * argument becomes a Python int.  No GIL needed. */
int shim_is_pure_int(Tcl_Obj *obj, Tcl_WideInt *w);
/* The answer r of a call (a new reference, or NULL with a Python error) as
 * the interp's result, or the error; TCL_OK or TCL_ERROR.  GIL held. */
int shim_set_result(Tcl_Interp *interp, PyObject *r);
/* A Python value -> a new Tcl_Obj (refcount 0), or NULL with a Python error.
 * None is the empty string; tuples/lists are lists; dicts are flat key/value lists. */
Tcl_Obj *shim_py_to_tcl(PyObject *value);
/* The Tcl values of None, a bool, a float, an int in 64 signed bits and an
 * int in 64 unsigned bits (its digits past 2**63 - 1), from their C values
 * (refcount 0): what shim_py_to_tcl makes of the same Python values.  No GIL
 * needed. */
Tcl_Obj *shim_null_to_tcl(void);
Tcl_Obj *shim_bool_to_tcl(int b);
Tcl_Obj *shim_double_to_tcl(double d);
Tcl_Obj *shim_wide_to_tcl(long long x);
Tcl_Obj *shim_u64_to_tcl(unsigned long long x);
/* A Tcl list of the n Python values items[0 .. n) (refcount 0), or NULL with a
 * Python error; `given` (if not NULL) stands at position `at` instead of the
 * conversion of items[at]. */
Tcl_Obj *shim_items_to_tcl(PyObject *const *items, Py_ssize_t n, Py_ssize_t at, Tcl_Obj *given);
/* The list of objs[0 .. n) when all n were made (made == n), else NULL after
 * freeing the `made` ones (refcount 0; `given`, the caller's own object, is
 * not freed); objs is freed unless it is the caller's stack array `small`. */
Tcl_Obj *shim_list_of(Tcl_Obj **objs, Py_ssize_t made, Py_ssize_t n, Tcl_Obj *given,
                      Tcl_Obj **small);
/* Turn the pending Python exception into the Tcl error (result, errorCode
 * starting with AEROSTORE, errorInfo); clears it; returns TCL_ERROR. */
int shim_python_error(Tcl_Interp *interp);
/* A Tcl error raised by the shim itself: message and errorCode words. */
int shim_usage_error(Tcl_Interp *interp, const char *detail);
/* Convert n Tcl arguments to Python values in stack; 0 or -1 (Python error). */
int shim_args_to_py(int n, Tcl_Obj *const objv[], PyObject **stack);
void shim_decref_args(int n, PyObject **stack);
/* The Python callable `split_list(str) -> list of str` (Tcl list syntax). */
extern PyMethodDef shim_split_list_def;

/* ---- options.c ---------------------------------------------------------- */

/* One option of a command.  `name` first: Tcl_GetIndexFromObjStruct reads it. */
typedef enum { SHIM_OPT_VALUE, SHIM_OPT_FLAG, SHIM_OPT_INT, SHIM_OPT_BOOL } ShimOptKind;
typedef struct ShimOption {
    const char *name;
    ShimOptKind kind;
    Tcl_WideInt min;           /* SHIM_OPT_INT: the smallest value allowed ... */
    const char *rule;          /* ... and how the message says it (NULL: no bound) */
} ShimOption;
typedef struct ShimOptionValue {
    Tcl_Obj *obj;              /* the value word (NULL for a flag) */
    Tcl_WideInt num;           /* SHIM_OPT_INT: the integer; SHIM_OPT_BOOL: 0 or 1 */
} ShimOptionValue;

/* Look `word` up in a table of structs whose first member is the name
 * (Tcl_GetIndexFromObjStruct: unique prefixes); on error the message is Tcl's
 * and errorCode AEROSTORE USAGE <code_word> <word>. */
int shim_lookup(Tcl_Interp *interp, Tcl_Obj *word, const void *table, int size,
                const char *what, const char *code_word, int *idx);
/* The option objv[i] and its value (objv[i+1], checked for its kind): its
 * index in `options` in *idx.  TCL_OK, or TCL_ERROR with a Tcl-style error. */
int shim_option(Tcl_Interp *interp, int objc, Tcl_Obj *const objv[], int i,
                const ShimOption *options, int *idx, ShimOptionValue *out);
/* Option/value pairs objv[i], objv[i+1], ... before objc, of value options
 * only: vals[index in options] = the value (the last of each wins). */
int shim_value_options(Tcl_Interp *interp, int objc, Tcl_Obj *const objv[], int i,
                       const ShimOption *options, Tcl_Obj **vals);
/* `"-x" option requires an additional argument` (AEROSTORE USAGE OPTION -x). */
int shim_missing_value(Tcl_Interp *interp, const char *option);
/* Set message (a new Tcl_Obj) and errorCode AEROSTORE USAGE word ?detail?; TCL_ERROR. */
int shim_usage_message(Tcl_Interp *interp, Tcl_Obj *message, const char *word, const char *detail);

/* ---- commands.c --------------------------------------------------------- */

/* Per-interpreter state.  Freed when the last reference goes (the interp's
 * deletion and pending watch events each hold one). */
typedef struct ShimInterp {
    Tcl_Interp *interp;
    Tcl_ThreadId thread;
    int safe;
    int alive;                 /* 0 once the interp is being deleted */
    int refs;                  /* guarded by a mutex in commands.c */
    PyObject *session;         /* the Session object (NULL once closed) */
    /* durable.c (under its mutex): the commit the interp's thread waits for */
    unsigned long long durable_seq;    /* the highest wait number a waker told */
    int durable_ok;                    /* and whether that commit was durable */
} ShimInterp;

void shim_interp_ref(ShimInterp *si);
/* session.<method>(*objv converted to Python); new reference, or NULL with a
 * Python error.  GIL held. */
PyObject *shim_call(ShimInterp *si, const char *method, int n, Tcl_Obj *const objv[]);
/* session.<method>(*base[2 .. 2+n)): n Python values (borrowed); base[0] and
 * base[1] are the call's own (scratch for vectorcall, the session); the same
 * contract. */
PyObject *shim_call_stack(ShimInterp *si, const char *method, PyObject **base, int n);
/* An optional argument: its Python value, or None for NULL (new reference). */
PyObject *shim_arg_or_none(Tcl_Obj *obj);
void shim_interp_unref(ShimInterp *si);

/* ---- search.c ----------------------------------------------------------- */

/* `FlightState search ...`: objv[0] is the command word, objv[1] "search". */
int shim_search(ShimInterp *si, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[]);

/* ---- rowget.c ----------------------------------------------------------- */

/* What shim_get_row answers when it leaves the call to the general path. */
#define SHIM_NOT_HANDLED (-1)
/* Once, after the bridge is imported (GIL held); without it every get takes
 * the general path. */
void shim_get_init(void);
/* `FlightState get key` (key_obj: the argument, key: as shim_arg_to_py made it) answered
 * from a settled row: TCL_OK with the row as the result (TCL_ERROR if it could
 * not be converted), or SHIM_NOT_HANDLED with nothing done (no Python error
 * set): then session.t_get decides.  GIL held. */
int shim_get_row(ShimInterp *si, Tcl_Interp *interp, Tcl_Obj *key_obj, PyObject *key);
/* What shim_get_nogil answers: `get key` (the row as a list),
 * `array_get key` (name value pairs, nulls left out), `array_get_with_nulls
 * key` (every pair), `exists key` (1 or 0). */
typedef enum { SHIM_ROW_NONE, SHIM_ROW_LIST, SHIM_ROW_PAIRS, SHIM_ROW_PAIRS_NULLS,
               SHIM_ROW_EXISTS } ShimRowForm;
/* The same answers without the GIL (aerostore/readgate.py): the settled row of
 * an ASCII key, or the nf fields named (names or aliases; not for exists),
 * read through the view shim_view_refresh last made, inside the read gate;
 * TCL_OK with the result set, or SHIM_NOT_HANDLED with nothing done.  Call it
 * without the GIL. */
int shim_get_nogil(ShimInterp *si, Tcl_Interp *interp, Tcl_Obj *key_obj, ShimRowForm form,
                   int nf, Tcl_Obj *const fields[]);
/* Make the view shim_get_nogil reads when it is missing or stale and a store
 * is open (GIL held; nothing happens otherwise). */
void shim_view_refresh(ShimInterp *si);
/* One field of the row views (Columns.arrays[3], columns.py) as a page of
 * settled slots reads it (search.c): what `get` reads per row, worked out
 * once per page.  kind is rowget.c's own (two of them named here: a list, for
 * str and too wide int fields, and the key, which has no column); the
 * buffers and lists are borrowed from the views, which the caller holds. */
#define SHIM_COLUMN_LIST 100
#define SHIM_COLUMN_KEY 101
typedef struct ShimColumn {
    int kind;                  /* rowget.c's own; SHIM_COLUMN_LIST, SHIM_COLUMN_KEY */
    const char *val, *nul;     /* a numeric field: its values' and nulls' buffers ... */
    Py_ssize_t size, len;      /* ... the item size and the slots both hold */
    PyObject *list;            /* a str (or too wide int) field: its list */
} ShimColumn;
/* The fields of views in field order, the key (not in the views) at kp:
 * cols[0 .. *n), at most max; 0 if the views do not have the documented
 * layout (rowget.c's checks).  GIL held. */
int shim_columns_at(PyObject *views, Py_ssize_t kp, ShimColumn *cols, Py_ssize_t max,
                    Py_ssize_t *n);
/* What shim_column_value answers for a slot it cannot read (the key field, a
 * slot past the column). */
#define SHIM_COLUMN_MISS 1
/* Slot's value of field c as the Tcl value convert.c makes of the Python
 * value (new, refcount 0), in *out; NULL for a null.  0, SHIM_COLUMN_MISS, or
 * -1 with a Python error.  GIL held; no Python code runs. */
int shim_column_value(const ShimColumn *c, Py_ssize_t slot, Tcl_Obj **out);

/* ---- events.c ----------------------------------------------------------- */

/* The Python callable `post_event(capsule, (watch, words))`: queue an event
 * to the interp's thread that runs `{*}watch.callback {*}words` there, unless
 * watch.callback is None by then (unwatch). */
extern PyMethodDef shim_post_event_def;
/* The Python callable `call_tcl(capsule, words)`: run a command in the interp
 * now (only from its own thread, inside one of its commands). */
extern PyMethodDef shim_call_tcl_def;
/* A capsule holding a reference to si, for Session.post_event. */
PyObject *shim_interp_capsule(ShimInterp *si);

/* ---- durable.c ---------------------------------------------------------- */

/* After the bridge is imported: find session.DurableWait; 0 or -1 (Python error). */
int shim_durable_init(void);
/* True (and *seq, its wait number) if a method's answer r is a DurableWait.  GIL held. */
int shim_is_durable_wait(PyObject *r, unsigned long long *seq);
/* Sleep until wait seq is over; 1 if its commit is durable, 0 if it failed.  GIL NOT held. */
int shim_wait_durable(ShimInterp *si, unsigned long long seq);
/* The Python callable `durable(capsule, seq, csn, ok) -> wake_all`, the waker's body. */
extern PyMethodDef shim_durable_def;
/* The most arguments a combined command takes (more: the caller runs it alone). */
#define SHIM_MAX_COMBINED_ARGS 16
/* session.<method>(*objv converted), run by whichever Tcl thread combines
 * (see durable.c); waits for its commit; the answer becomes the interp's
 * result.  n <= SHIM_MAX_COMBINED_ARGS.  GIL NOT held. */
int shim_combined_call(ShimInterp *si, Tcl_Interp *interp, const char *method,
                       int n, Tcl_Obj *const objv[]);

#endif
