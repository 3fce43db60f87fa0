/*
 * Aerostore_Init / Aerostore_SafeInit and the Tcl commands.
 *
 * Every interpreter that loads the package gets a ShimInterp and a Python
 * Session (aerostore.tclbridge.session); the engine behind them is one per
 * process.  Commands check subcommands, options and argument counts here, in
 * Tcl's own words (Tcl_GetIndexFromObjStruct, Tcl_WrongNumArgs; options.c),
 * then convert the arguments in C and call one Session method: `FlightState
 * get k` calls session.t_get(k), `aerostore::init d` calls session.a_init(d),
 * `FlightState write_tsv -file f` calls session.t_write_tsv(None, f) (an
 * option not given is None).
 *
 * Safe interpreters get FlightState with a read-only subset of subcommands
 * and none of the aerostore:: commands (no files, no configuration).
 */
#include "shim.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PACKAGE_VERSION "0.1"
#define TABLE_COMMAND "FlightState"

typedef enum { CALL, GET, ROW, SEARCH, INDEX, TRANSACTION, INIT, OPTIONS, COMBINED } Kind;

/* The words of a command with options (Kind OPTIONS), after the command
 * words: `lead` words, then (if `maybe`) one word that does not start with
 * "-" or nothing, then option/value pairs (value options only; the last of
 * each wins), then (if `tail`) a last word.  The method gets them in that
 * order, the options' values in table order, None for each one not given. */
typedef struct OptionForm {
    const ShimOption *options;     /* ends with a NULL name */
    int lead, maybe, tail;
} OptionForm;

#define MAX_OPTION_ARGS 4          /* the most arguments an OptionForm passes on */

/* FlightState ingest_file path ?batch_size? ?-progress command? */
static const ShimOption ingest_file_options[] = {
    {"-progress", SHIM_OPT_VALUE, 0, NULL},
    {NULL, SHIM_OPT_VALUE, 0, NULL}
};
static const OptionForm ingest_file_form = {.options = ingest_file_options, .lead = 1, .maybe = 1};

/* FlightState write_tsv ?-compare terms? ?-file path? */
static const ShimOption write_tsv_options[] = {
    {"-compare", SHIM_OPT_VALUE, 0, NULL},
    {"-file", SHIM_OPT_VALUE, 0, NULL},
    {NULL, SHIM_OPT_VALUE, 0, NULL}
};
static const OptionForm write_tsv_form = {.options = write_tsv_options};

/* FlightState watch ?-key key? ?-compare terms? callback */
static const ShimOption watch_options[] = {
    {"-compare", SHIM_OPT_VALUE, 0, NULL},
    {"-key", SHIM_OPT_VALUE, 0, NULL},
    {NULL, SHIM_OPT_VALUE, 0, NULL}
};
static const OptionForm watch_form = {.options = watch_options, .tail = 1};

/* One subcommand or command.  `name` first: Tcl_GetIndexFromObjStruct reads it.
 * Arguments after the command words: at least min, at most max (-1: any), and
 * beyond min they come in groups of `step` (0: no extra).  `form`: the words
 * of a Kind OPTIONS command; `row`: what a Kind ROW command answers from a
 * settled row without the GIL when it can (rowget.c, shim_get_nogil); when
 * it cannot, the command is a CALL that also refreshes the view. */
typedef struct Spec {
    const char *name;
    const char *method;
    Kind kind;
    int min, max, step;
    const char *usage;
    const OptionForm *form;
    ShimRowForm row;
} Spec;

static const Spec table_subs[] = {
    {"array_get", "t_array_get", ROW, 1, -1, 1, "key ?field ...?", NULL, SHIM_ROW_PAIRS},
    {"array_get_with_nulls", "t_array_get_with_nulls", ROW, 1, -1, 1, "key ?field ...?", NULL,
     SHIM_ROW_PAIRS_NULLS},
    {"count", "t_count", CALL, 0, 0, 0, ""},
    {"delete", "t_delete", CALL, 1, 1, 0, "key"},
    {"exists", "t_exists", ROW, 1, 1, 0, "key", NULL, SHIM_ROW_EXISTS},
    {"fields", "t_fields", CALL, 0, 0, 0, ""},
    {"get", "t_get", GET, 1, -1, 1, "key ?field ...?"},
    {"index", NULL, INDEX, 1, 2, 0, "indexed|create field|drop field"},
    {"ingest_file", "t_ingest_file", OPTIONS, 1, 4, 0, "path ?batch_size? ?-progress command?",
     &ingest_file_form},
    {"ingest_tsv", "t_ingest_tsv", CALL, 1, 2, 0, "tsv ?batch_size?"},
    {"search", "t_search", SEARCH, 0, -1, 0, "?-option value ...?"},
    {"set", "c_set", COMBINED, 3, -1, 2, "key field value ?field value ...?"},
    {"unwatch", "t_unwatch", CALL, 1, 1, 0, "id"},
    {"watch", "t_watch", OPTIONS, 1, -1, 2, "?-key key? ?-compare list? callback", &watch_form},
    {"write_tsv", "t_write_tsv", OPTIONS, 0, -1, 1, "?-option value ...?", &write_tsv_form},
    {NULL, NULL, CALL, 0, 0, 0, NULL}
};

static const Spec safe_table_subs[] = {
    {"count", "t_count", CALL, 0, 0, 0, ""},
    {"exists", "t_exists", ROW, 1, 1, 0, "key", NULL, SHIM_ROW_EXISTS},
    {"fields", "t_fields", CALL, 0, 0, 0, ""},
    {"get", "t_get", GET, 1, -1, 1, "key ?field ...?"},
    {"search", "t_search", SEARCH, 0, -1, 0, "?-option value ...?"},
    {NULL, NULL, CALL, 0, 0, 0, NULL}
};

static const Spec index_subs[] = {
    {"create", "t_index_create", CALL, 1, 1, 0, "field"},
    {"drop", "t_index_drop", CALL, 1, 1, 0, "field"},
    {"indexed", "t_index_indexed", CALL, 0, 0, 0, ""},
    {NULL, NULL, CALL, 0, 0, 0, NULL}
};

static const Spec ns_commands[] = {
    {"::aerostore::init", "a_init", INIT, 0, 1, 0, "?data_dir?"},
    {"::aerostore::set_config", "a_set_config", CALL, 2, 2, 0, "key value"},
    {"::aerostore::get_config", "a_get_config", CALL, 1, 1, 0, "key"},
    {"::aerostore::checkpoint_now", "a_checkpoint_now", CALL, 0, 0, 0, ""},
    {"::aerostore::transaction", NULL, TRANSACTION, 1, 1, 0, "script"},
    {"::aerostore::stats", "a_stats", CALL, 0, 0, 0, ""},
    {"::aerostore::close", "a_close", CALL, 0, 0, 0, ""},
    {NULL, NULL, CALL, 0, 0, 0, NULL}
};

typedef struct NsCommand {      /* clientData of one aerostore:: command */
    ShimInterp *si;
    const Spec *spec;
} NsCommand;

static void create_commands(Tcl_Interp *interp, ShimInterp *si, int replace);

/* ---- ShimInterp lifetime ------------------------------------------------ */

static pthread_mutex_t refs_lock = PTHREAD_MUTEX_INITIALIZER;

void shim_interp_ref(ShimInterp *si)
{
    pthread_mutex_lock(&refs_lock);
    si->refs++;
    pthread_mutex_unlock(&refs_lock);
}

void shim_interp_unref(ShimInterp *si)
{
    int last;

    pthread_mutex_lock(&refs_lock);
    last = --si->refs == 0;
    pthread_mutex_unlock(&refs_lock);
    if (last) {
        free(si);
    }
}

/* ---- calling the Session ------------------------------------------------ */

static PyObject *method_name(const char *method)
{
    /* Interned names, made once per distinct string (under the GIL). */
    static struct { const char *c; PyObject *py; } cache[48];
    int i;

    for (i = 0; i < 48 && cache[i].c; i++) {
        if (cache[i].c == method) {
            return cache[i].py;
        }
    }
    if (i == 48) {
        return PyUnicode_InternFromString(method);   /* not reached: the tables are smaller */
    }
    cache[i].py = PyUnicode_InternFromString(method);
    if (cache[i].py) {
        cache[i].c = method;
    }
    return cache[i].py;
}

PyObject *shim_call_stack(ShimInterp *si, const char *method, PyObject **base, int n)
{
    PyObject *name;

    if (!si->session) {
        PyErr_SetString(PyExc_RuntimeError, "the interpreter is being deleted");
        return NULL;
    }
    name = method_name(method);
    if (!name) {
        return NULL;
    }
    base[1] = si->session;
    return PyObject_VectorcallMethod(name, base + 1, (n + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* session.<method>(*objv converted); new reference or NULL (Python error). */
PyObject *shim_call(ShimInterp *si, const char *method, int n, Tcl_Obj *const objv[])
{
    PyObject *small[9], **base = small, *r = NULL;

    if (n + 2 > 9) {
        base = PyMem_Malloc(sizeof(PyObject *) * (n + 2));
        if (!base) {
            return PyErr_NoMemory();
        }
    }
    if (shim_args_to_py(n, objv, base + 2) == 0) {
        r = shim_call_stack(si, method, base, n);
        shim_decref_args(n, base + 2);
    }
    if (base != small) {
        PyMem_Free(base);
    }
    return r;
}

/* The answer r of a call (a new reference, or NULL with a Python error) as
 * the interp's result, or the error; TCL_OK or TCL_ERROR.  GIL held. */
int shim_set_result(Tcl_Interp *interp, PyObject *r)
{
    Tcl_Obj *res = r ? shim_py_to_tcl(r) : NULL;

    Py_XDECREF(r);
    if (!res) {
        return shim_python_error(interp);
    }
    Tcl_SetObjResult(interp, res);
    return TCL_OK;
}

/* session.<method>(*vals), each Tcl value converted, NULL as None; the
 * answer becomes the interp's result. */
static int call_optional(ShimInterp *si, Tcl_Interp *interp, const char *method,
                         int n, Tcl_Obj *const vals[])
{
    PyGILState_STATE g = shim_gil_enter();
    PyObject *base[2 + MAX_OPTION_ARGS], *r = NULL;     /* n <= MAX_OPTION_ARGS */
    int i, code;

    for (i = 0; i < n; i++) {
        if (!(base[2 + i] = shim_arg_or_none(vals[i]))) {
            break;
        }
    }
    if (i == n) {
        r = shim_call_stack(si, method, base, n);
    }
    while (i-- > 0) {
        Py_DECREF(base[2 + i]);
    }
    code = shim_set_result(interp, r);
    shim_gil_leave(g);
    return code;
}

/* session.<method>(*objv converted); its answer becomes the interp's result.
 * A DurableWait answer (a write whose commit waits for its log flush) is
 * waited for here, without the GIL (durable.c); the result is then empty, or
 * the error session.t_durable_failed() raises. */
static int call_and_set_result(ShimInterp *si, Tcl_Interp *interp, const char *method,
                               int n, Tcl_Obj *const objv[])
{
    PyGILState_STATE g = shim_gil_enter();
    PyObject *r = shim_call(si, method, n, objv);
    unsigned long long seq;
    int code;

    if (r && shim_is_durable_wait(r, &seq)) {
        Py_DECREF(r);
        shim_gil_leave(g);
        if (shim_wait_durable(si, seq)) {
            Tcl_ResetResult(interp);
            return TCL_OK;
        }
        g = shim_gil_enter();
        r = shim_call(si, "t_durable_failed", 0, NULL);
    }
    code = shim_set_result(interp, r);
    shim_gil_leave(g);
    return code;
}

/* A row read the path without the GIL left (get, array_get, exists ...):
 * session.<method>(args) under the GIL, then the view that path reads made
 * if it is stale, in the same GIL section, so that the next call can do
 * without it.  TCL_OK or TCL_ERROR. */
static int row_call(ShimInterp *si, Tcl_Interp *interp, const char *method, int n,
                    Tcl_Obj *const objv[])
{
    PyGILState_STATE g = shim_gil_enter();
    PyObject *r = shim_call(si, method, n, objv);
    int code = shim_set_result(interp, r);

    shim_view_refresh(si);
    shim_gil_leave(g);
    return code;
}

/* FlightState get key ?field ...?: the row or the fields named from rowget.c
 * without the GIL when it can answer; else a whole row from rowget.c with the
 * GIL, else session.t_get (the key converted once for both). */
static int get_cmd(ShimInterp *si, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[])
{
    PyGILState_STATE g;
    PyObject *base[3], *r;
    int code;

    code = shim_get_nogil(si, interp, objv[2], SHIM_ROW_LIST, objc - 3, objv + 3);
    if (code != SHIM_NOT_HANDLED) {
        return code;
    }
    if (objc != 3) {
        return row_call(si, interp, "t_get", objc - 2, objv + 2);
    }
    g = shim_gil_enter();
    base[2] = shim_arg_to_py(objv[2]);
    if (!base[2]) {
        code = shim_python_error(interp);
    } else {
        code = shim_get_row(si, interp, objv[2], base[2]);
        if (code == SHIM_NOT_HANDLED) {
            r = shim_call_stack(si, "t_get", base, 1);
            code = shim_set_result(interp, r);
        }
        Py_DECREF(base[2]);
        shim_view_refresh(si);          /* so that the next get can do without the GIL */
    }
    shim_gil_leave(g);
    return code;
}

static int check_arity(Tcl_Interp *interp, const Spec *spec, int words, int objc, Tcl_Obj *const objv[])
{
    int n = objc - words;

    if (n < spec->min || (spec->max >= 0 && n > spec->max)
            || (spec->step > 1 && (n - spec->min) % spec->step != 0)) {
        Tcl_WrongNumArgs(interp, words, objv, *spec->usage ? spec->usage : NULL);
        return shim_usage_error(interp, "WRONGARGS");
    }
    return TCL_OK;
}

static int lookup(Tcl_Interp *interp, Tcl_Obj *word, const Spec *table, int *idx)
{
    return shim_lookup(interp, word, table, sizeof(Spec), "subcommand", "SUBCOMMAND", idx);
}

/* ---- commands with options ---------------------------------------------- */

/* session.<method>(...) with the words of spec->form (see OptionForm).  A
 * word after the lead ones that does not start with "-" is the `maybe` word
 * (ingest_file's batch size); a last word that names an option is that option
 * without its value (`watch -key`: the callback forgotten), not the tail. */
static int options_cmd(ShimInterp *si, Tcl_Interp *interp, const Spec *spec, int objc,
                       Tcl_Obj *const objv[])
{
    const OptionForm *f = spec->form;
    Tcl_Obj *vals[MAX_OPTION_ARGS] = {NULL};
    int i = 2, n = 0, nopt = 0, end = objc, idx;

    while (f->options[nopt].name) {
        nopt++;
    }
    if (f->lead + f->maybe + nopt + f->tail > MAX_OPTION_ARGS) {      /* a table's mistake */
        Tcl_SetObjResult(interp, Tcl_ObjPrintf("aerostore: internal error: %s passes more than "
                                               "%d arguments", spec->name, MAX_OPTION_ARGS));
        Tcl_SetErrorCode(interp, "AEROSTORE", "INTERNAL", NULL);
        return TCL_ERROR;
    }
    while (n < f->lead) {          /* the arity check saw them */
        vals[n++] = objv[i++];
    }
    if (f->maybe) {
        if (i < objc && Tcl_GetString(objv[i])[0] != '-') {
            vals[n] = objv[i++];
        }
        n++;
    }
    if (f->tail) {
        end = objc - 1;
        if (Tcl_GetString(objv[end])[0] == '-'
                && Tcl_GetIndexFromObjStruct(NULL, objv[end], f->options, sizeof(ShimOption),
                                             "option", 0, &idx) == TCL_OK) {
            return shim_missing_value(interp, f->options[idx].name);
        }
        vals[n + nopt] = objv[end];
    }
    if (shim_value_options(interp, end, objv, i, f->options, vals + n) != TCL_OK) {
        return TCL_ERROR;
    }
    return call_optional(si, interp, spec->method, n + nopt + f->tail, vals);
}

/* ---- FlightState -------------------------------------------------------- */

static int table_cmd(ClientData cd, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[])
{
    ShimInterp *si = cd;
    const Spec *spec;
    int idx;

    if (objc < 2) {
        Tcl_WrongNumArgs(interp, 1, objv, "subcommand ?arg ...?");
        return shim_usage_error(interp, "WRONGARGS");
    }
    if (lookup(interp, objv[1], si->safe ? safe_table_subs : table_subs, &idx) != TCL_OK) {
        return TCL_ERROR;
    }
    spec = &(si->safe ? safe_table_subs : table_subs)[idx];
    if (check_arity(interp, spec, 2, objc, objv) != TCL_OK) {
        return TCL_ERROR;
    }
    switch (spec->kind) {
    case GET:
        return get_cmd(si, interp, objc, objv);
    case ROW:
        if (shim_get_nogil(si, interp, objv[2], spec->row, objc - 3, objv + 3) == TCL_OK) {
            return TCL_OK;
        }
        return row_call(si, interp, spec->method, objc - 2, objv + 2);
    case SEARCH:
        return shim_search(si, interp, objc, objv);
    case INDEX:
        if (lookup(interp, objv[2], index_subs, &idx) != TCL_OK) {
            return TCL_ERROR;
        }
        spec = &index_subs[idx];
        if (check_arity(interp, spec, 3, objc, objv) != TCL_OK) {
            return TCL_ERROR;
        }
        return call_and_set_result(si, interp, spec->method, objc - 3, objv + 3);
    case OPTIONS:
        return options_cmd(si, interp, spec, objc, objv);
    case COMBINED:
        if (objc - 2 <= SHIM_MAX_COMBINED_ARGS) {
            return shim_combined_call(si, interp, spec->method, objc - 2, objv + 2);
        }
        return call_and_set_result(si, interp, "t_set", objc - 2, objv + 2);
    default:
        return call_and_set_result(si, interp, spec->method, objc - 2, objv + 2);
    }
}

/* ---- aerostore:: -------------------------------------------------------- */

static int transaction_cmd(ShimInterp *si, Tcl_Interp *interp, Tcl_Obj *const objv[])
{
    PyGILState_STATE g = shim_gil_enter();
    PyObject *r = shim_call(si, "txn_begin", 0, NULL);
    int code;

    if (!r) {
        code = shim_python_error(interp);
        shim_gil_leave(g);
        return code;
    }
    Py_DECREF(r);
    shim_gil_leave(g);

    code = Tcl_EvalObjEx(interp, objv[1], 0);

    g = shim_gil_enter();
    if (code == TCL_OK) {
        r = shim_call(si, "txn_commit", 0, NULL);
        if (!r) {
            code = shim_python_error(interp);
        }
    } else {
        if (code == TCL_ERROR) {
            Tcl_AppendObjToErrorInfo(interp, Tcl_ObjPrintf("\n    (\"%s\" body line %d)",
                                     Tcl_GetString(objv[0]), Tcl_GetErrorLine(interp)));
        }
        r = shim_call(si, "txn_rollback", 0, NULL);
        if (!r) {
            PyErr_Clear();     /* the script's own outcome is what the caller must see */
        }
    }
    Py_XDECREF(r);
    shim_gil_leave(g);
    return code;
}

/* aerostore::init ?data_dir?.  A path that starts with "~" is expanded as
 * Tcl's file commands expand it (Tcl_FSGetTranslatedPath: ~ is $HOME, ~user
 * that user's home); the Session checks and opens the rest.  Each call also
 * brings back this interp's commands that were renamed away or deleted:
 * `load` and `package require` do nothing in an interp that already has the
 * package, so this is how a script gets FlightState back. */
static int init_cmd(ShimInterp *si, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[])
{
    Tcl_Obj *path = NULL;
    int code;

    create_commands(interp, si, 0);
    if (objc == 2 && Tcl_GetString(objv[1])[0] == '~') {
        path = Tcl_FSGetTranslatedPath(interp, objv[1]);     /* a new reference */
        if (!path) {
            Tcl_Obj *code_words = Tcl_NewStringObj("AEROSTORE USAGE DIR", -1);
            Tcl_SetObjResult(interp, Tcl_ObjPrintf("cannot open data directory \"%s\": %s",
                             Tcl_GetString(objv[1]), Tcl_GetString(Tcl_GetObjResult(interp))));
            Tcl_ListObjAppendElement(NULL, code_words, objv[1]);
            Tcl_SetObjErrorCode(interp, code_words);
            return TCL_ERROR;
        }
    }
    code = call_and_set_result(si, interp, "a_init", path ? 1 : objc - 1, path ? &path : objv + 1);
    if (path) {
        Tcl_DecrRefCount(path);
    }
    return code;
}

static int ns_cmd(ClientData cd, Tcl_Interp *interp, int objc, Tcl_Obj *const objv[])
{
    NsCommand *c = cd;

    if (check_arity(interp, c->spec, 1, objc, objv) != TCL_OK) {
        return TCL_ERROR;
    }
    if (c->spec->kind == INIT) {
        return init_cmd(c->si, interp, objc, objv);
    }
    if (c->spec->kind == TRANSACTION) {
        /* The script may delete this command (or the interp): keep si. */
        ShimInterp *si = c->si;
        int code;
        shim_interp_ref(si);
        code = transaction_cmd(si, interp, objv);
        shim_interp_unref(si);
        return code;
    }
    return call_and_set_result(c->si, interp, c->spec->method, objc - 1, objv + 1);
}

/* ---- set-up and tear-down ----------------------------------------------- */

static void interp_deleted(ClientData cd, Tcl_Interp *interp)
{
    ShimInterp *si = cd;

    (void)interp;
    si->alive = 0;
    if (shim_python_alive()) {
        PyGILState_STATE g = shim_gil_enter();
        PyObject *r = PyObject_CallMethod(si->session, "close", NULL);
        if (!r) {
            PyErr_WriteUnraisable(si->session);
        }
        Py_XDECREF(r);
        Py_CLEAR(si->session);
        shim_gil_leave(g);
    }
    shim_interp_unref(si);
}

static void table_command_deleted(ClientData cd)
{
    shim_interp_unref(cd);
}

static void ns_command_deleted(ClientData cd)
{
    NsCommand *c = cd;
    shim_interp_unref(c->si);
    ckfree((char *)c);
}

static void process_exit(ClientData unused)
{
    /* Tcl's exit: close the store (flush, stop background threads).  Python's
     * atexit does the same where Python finalises (tkinter); both are idempotent. */
    (void)unused;
    if (shim_python_alive() && shim_session_module) {
        PyGILState_STATE g = shim_gil_enter();
        PyObject *r = PyObject_CallMethod(shim_session_module, "shutdown", NULL);
        if (!r) {
            PyErr_WriteUnraisable(shim_session_module);
        }
        Py_XDECREF(r);
        shim_gil_leave(g);
    }
}

/* Create FlightState and (in a trusted interp) the aerostore:: commands.
 * replace: at load, replace whatever has those names; otherwise create only
 * the ones that do not exist (a command of the user's own keeps its name). */
static void create_commands(Tcl_Interp *interp, ShimInterp *si, int replace)
{
    Tcl_CmdInfo info;
    const Spec *spec;

    if (replace || !Tcl_GetCommandInfo(interp, "::" TABLE_COMMAND, &info)) {
        shim_interp_ref(si);
        Tcl_CreateObjCommand(interp, "::" TABLE_COMMAND, table_cmd, si, table_command_deleted);
    }
    if (si->safe) {
        return;
    }
    for (spec = ns_commands; spec->name; spec++) {
        NsCommand *c;
        if (!replace && Tcl_GetCommandInfo(interp, spec->name, &info)) {
            continue;
        }
        c = (NsCommand *)ckalloc(sizeof *c);
        c->si = si;
        c->spec = spec;
        shim_interp_ref(si);
        Tcl_CreateObjCommand(interp, spec->name, ns_cmd, c, ns_command_deleted);
    }
}

static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void register_exit_handler(void)
{
    Tcl_CreateExitHandler(process_exit, NULL);
}

static int init_interp(Tcl_Interp *interp, int safe)
{
    ShimInterp *si;
    PyGILState_STATE g;
    PyObject *capsule;

    if (Tcl_InitStubs(interp, "8.6", 0) == NULL) {
        return TCL_ERROR;
    }
    if (shim_start(interp) != TCL_OK) {
        return TCL_ERROR;
    }
    si = calloc(1, sizeof *si);
    if (!si) {
        Tcl_SetObjResult(interp, Tcl_NewStringObj("aerostore: out of memory", -1));
        return TCL_ERROR;
    }
    si->interp = interp;
    si->thread = Tcl_GetCurrentThread();
    si->safe = safe;
    si->alive = 1;
    si->refs = 1;                     /* released by interp_deleted */

    g = shim_gil_enter();
    capsule = shim_interp_capsule(si);
    if (capsule) {
        si->session = PyObject_CallMethod(shim_session_module, "Session", "OO",
                                          safe ? Py_True : Py_False, capsule);
        Py_DECREF(capsule);
    }
    if (!si->session) {
        int code = shim_python_error(interp);
        shim_gil_leave(g);
        shim_interp_unref(si);
        return code;
    }
    shim_gil_leave(g);

    Tcl_CallWhenDeleted(interp, interp_deleted, si);
    create_commands(interp, si, 1);
    pthread_once(&exit_once, register_exit_handler);
    return Tcl_PkgProvide(interp, "aerostore", PACKAGE_VERSION);
}

SHIM_EXPORT int Aerostore_Init(Tcl_Interp *interp)
{
    return init_interp(interp, 0);
}

SHIM_EXPORT int Aerostore_SafeInit(Tcl_Interp *interp)
{
    return init_interp(interp, 1);
}
