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
 *   (count, rows, key_pos, positions, names, finish)
 *
 * rows are row tuples; positions/names the fields to bind, in order; finish
 * None, or a callable finish(visited, completed) -> result for -delete (it
 * deletes the visited rows, or nothing when completed is false).
 *
 * Here, rows are converted to Tcl values in chunks while holding the GIL, then
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
    PyObject *rows;            /* list of tuples (borrowed from the plan tuple) */
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

    if (!PyArg_ParseTuple(t, "nO!iO!O!O", &p->count, &PyList_Type, &p->rows, &p->key_pos,
                          &PyTuple_Type, &positions, &PyTuple_Type, &names, &p->finish)) {
        return -1;
    }
    if (PyTuple_GET_SIZE(positions) != PyTuple_GET_SIZE(names)) {
        PyErr_SetString(PyExc_ValueError, "bad search plan");
        return -1;
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
    if (p->empty) {
        Tcl_DecrRefCount(p->empty);
    }
}

/* Convert rows[start, start+n) into vals: per row, the key then the bound
 * fields; NULL for a null.  GIL held.  0 or -1 (Python error). */
static int convert_chunk(Plan *p, Py_ssize_t start, int n, Tcl_Obj **vals)
{
    int width = p->nf + 1, r, j;

    for (r = 0; r < n; r++) {
        PyObject *row = PyList_GET_ITEM(p->rows, start + r);
        Tcl_Obj **out = vals + r * width;
        if (!PyTuple_Check(row)) {
            PyErr_SetString(PyExc_TypeError, "search row is not a tuple");
            goto fail;
        }
        for (j = 0; j < width; j++) {
            int pos = j == 0 ? p->key_pos : p->positions[j - 1];
            PyObject *v;
            out[j] = NULL;
            if ((j == 0 && !p->key_var) || pos < 0 || pos >= PyTuple_GET_SIZE(row)) {
                continue;
            }
            v = PyTuple_GET_ITEM(row, pos);
            if (v == Py_None) {
                continue;
            }
            out[j] = shim_py_to_tcl(v);
            if (!out[j]) {
                goto fail;
            }
            Tcl_IncrRefCount(out[j]);
        }
    }
    return 0;
fail:
    for (j = 0; j < r * width + width; j++) {
        if (vals[j]) {
            Tcl_DecrRefCount(vals[j]);
            vals[j] = NULL;
        }
    }
    return -1;
}

static void release_chunk(Tcl_Obj **vals, int count)
{
    int i;

    for (i = 0; i < count; i++) {
        if (vals[i]) {
            Tcl_DecrRefCount(vals[i]);
            vals[i] = NULL;
        }
    }
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
        value = Tcl_NewDictObj();
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

/* Run the loop with the GIL held on entry and exit; returns a Tcl code and
 * sets *visited / *completed. */
static int run_rows(Tcl_Interp *interp, Plan *p, Tcl_Obj *cmd, Py_ssize_t *visited, int *completed)
{
    Py_ssize_t total = PyList_GET_SIZE(p->rows), start;
    int width = p->nf + 1;
    Tcl_Obj **vals = calloc((size_t)CHUNK * width, sizeof(Tcl_Obj *));
    int code = TCL_OK;

    *visited = 0;
    *completed = 0;
    if (!vals) {
        PyErr_NoMemory();
        return shim_python_error(interp);
    }
    for (start = 0; start < total && code == TCL_OK; start += CHUNK) {
        int n = total - start < CHUNK ? (int)(total - start) : CHUNK, r;
        PyThreadState *ts;
        if (convert_chunk(p, start, n, vals) != 0) {
            code = shim_python_error(interp);
            break;
        }
        ts = PyEval_SaveThread();
        for (r = 0; r < n; r++) {
            code = bind_row(interp, p, vals + r * width);
            if (code != TCL_OK || !p->body) {
                if (code == TCL_OK) {
                    (*visited)++;
                }
                if (code != TCL_OK) {
                    break;
                }
                continue;
            }
            code = Tcl_EvalObjEx(interp, p->body, 0);
            if (code == TCL_OK || code == TCL_CONTINUE) {
                code = TCL_OK;
                (*visited)++;
            } else if (code == TCL_BREAK) {
                (*visited)++;
                break;
            } else {
                if (code == TCL_ERROR) {
                    Tcl_AppendObjToErrorInfo(interp, Tcl_ObjPrintf("\n    (\"%s search\" body line %d)",
                                             Tcl_GetString(cmd), Tcl_GetErrorLine(interp)));
                }
                break;
            }
        }
        release_chunk(vals, n * width);
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
