/*
 * Values between Tcl and Python, converted in C with the CPython C API
 * (about 1.3 us for ten arguments, against 20 us through cffi calls).
 *
 * Strings: Tcl's internal UTF-8 is "modified": NUL is c0 80 and characters
 * outside the BMP are two encoded surrogates (CESU-8).  Decoding follows
 * _tkinter: plain UTF-8 first, then NUL fixed up and surrogate pairs joined.
 * Encoding: BMP text goes through UTF-8 with each NUL written as C0 80;
 * text with characters outside the BMP or lone surrogates goes through
 * Tcl_NewUnicodeObj with UTF-16 (Tcl_UniChar is 16 bits in Tcl 8.6).
 *
 * Errors: an AerostoreError becomes a Tcl error with errorCode = its
 * tcl_errorcode; any other exception becomes AEROSTORE INTERNAL <type>, with
 * the Python traceback in errorInfo.  The mapping itself is Python code
 * (session.tcl_error), called here.
 */
#include "shim.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static const Tcl_ObjType *int_type, *wide_type;

void shim_convert_init(void)
{
    int_type = Tcl_GetObjType("int");
    wide_type = Tcl_GetObjType("wideInt");
}

/* ---- Tcl -> Python ------------------------------------------------------ */

static PyObject *join_surrogates(PyObject *r)
{
    /* r was decoded with surrogateescape: an encoded surrogate (ED A0..BF xx)
     * appears as the three escapes U+DCED U+DCAx/U+DCBx U+DC80..BF. */
    Py_ssize_t len = PyUnicode_GET_LENGTH(r), i, j;
    Py_UCS4 *u;
    PyObject *out;

    i = PyUnicode_FindChar(r, 0xdcED, 0, len, 1);
    if (i == -2) {
        Py_DECREF(r);
        return NULL;
    }
    if (i == -1) {
        return r;
    }
    u = PyUnicode_AsUCS4Copy(r);
    Py_DECREF(r);
    if (!u) {
        return NULL;
    }
    for (j = i; i < len; i++, j++) {
        Py_UCS4 ch = u[i];
        if (ch == 0xdcED && i + 5 < len
                && u[i + 1] >= 0xdcA0 && u[i + 1] <= 0xdcAF
                && u[i + 2] >= 0xdc80 && u[i + 2] <= 0xdcBF
                && u[i + 3] == 0xdcED
                && u[i + 4] >= 0xdcB0 && u[i + 4] <= 0xdcBF
                && u[i + 5] >= 0xdc80 && u[i + 5] <= 0xdcBF) {
            Py_UCS4 high = 0xD000 | ((u[i + 1] & 0x3F) << 6) | (u[i + 2] & 0x3F);
            Py_UCS4 low = 0xD000 | ((u[i + 4] & 0x3F) << 6) | (u[i + 5] & 0x3F);
            ch = 0x10000 + (((high & 0x03FF) << 10) | (low & 0x03FF));
            i += 5;
        } else if (ch == 0xdcED && i + 2 < len
                && u[i + 1] >= 0xdcA0 && u[i + 1] <= 0xdcBF
                && u[i + 2] >= 0xdc80 && u[i + 2] <= 0xdcBF) {
            /* A lone encoded surrogate: keep it as that surrogate code point. */
            ch = 0xD000 | ((u[i + 1] & 0x3F) << 6) | (u[i + 2] & 0x3F);
            i += 2;
        }
        u[j] = ch;
    }
    out = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, u, j);
    PyMem_Free(u);
    return out;
}

PyObject *shim_str_from_utf(const char *s, Py_ssize_t n)
{
    PyObject *r;
    char *buf = NULL;
    Py_ssize_t i;

    for (i = 0; i < n && (unsigned char)s[i] < 0x80; i++) {
    }
    if (i == n) {
        /* ASCII (most keys and words): copied as it is, without the decoder's set-up. */
        r = PyUnicode_New(n, 127);
        if (r) {
            memcpy(PyUnicode_DATA(r), s, n);
        }
        return r;
    }
    r = PyUnicode_DecodeUTF8(s, n, NULL);

    if (r || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        return r;
    }
    PyErr_Clear();
    if (memchr(s, '\xc0', n)) {
        const char *e = s + n;
        char *q = buf = PyMem_Malloc(n ? n : 1);
        if (!buf) {
            return PyErr_NoMemory();
        }
        while (s != e) {
            if (s + 1 != e && s[0] == '\xc0' && s[1] == '\x80') {
                *q++ = '\0';
                s += 2;
            } else {
                *q++ = *s++;
            }
        }
        s = buf;
        n = q - buf;
    }
    r = PyUnicode_DecodeUTF8(s, n, "surrogateescape");
    PyMem_Free(buf);
    if (!r || PyUnicode_KIND(r) == PyUnicode_1BYTE_KIND) {
        return r;
    }
    return join_surrogates(r);
}

int shim_is_pure_int(Tcl_Obj *obj, Tcl_WideInt *w)
{
    /* A pure integer (e.g. from expr): its value, without making its string.
     * Every reader of arguments treats an int exactly as its decimal string.
     * A pure double goes through its string: a float would differ from
     * that string where a field wants an integer (2.0 against "2.0"). */
    return obj->bytes == NULL && (obj->typePtr == int_type || obj->typePtr == wide_type)
        && Tcl_GetWideIntFromObj(NULL, obj, w) == TCL_OK;
}

PyObject *shim_arg_to_py(Tcl_Obj *obj)
{
    int len;
    const char *s;
    Tcl_WideInt w;

    if (shim_is_pure_int(obj, &w)) {
        return PyLong_FromLongLong((long long)w);
    }
    s = Tcl_GetStringFromObj(obj, &len);
    return shim_str_from_utf(s, len);
}

PyObject *shim_arg_or_none(Tcl_Obj *obj)
{
    if (!obj) {
        Py_RETURN_NONE;
    }
    return shim_arg_to_py(obj);
}

int shim_args_to_py(int n, Tcl_Obj *const objv[], PyObject **stack)
{
    int i;

    for (i = 0; i < n; i++) {
        stack[i] = shim_arg_to_py(objv[i]);
        if (!stack[i]) {
            shim_decref_args(i, stack);
            return -1;
        }
    }
    return 0;
}

void shim_decref_args(int n, PyObject **stack)
{
    int i;

    for (i = 0; i < n; i++) {
        Py_DECREF(stack[i]);
    }
}

/* ---- Python -> Tcl ------------------------------------------------------ */

/* Standard UTF-8 without surrogates -> a Tcl string: NUL bytes become
 * C0 80, the only difference from Tcl's modified UTF-8 in the BMP. */
static Tcl_Obj *utf8_to_tcl(const char *s, Py_ssize_t n)
{
    const char *nul = memchr(s, '\0', n), *e = s + n;
    char *buf, *q;
    Tcl_Obj *out;

    if (!nul) {
        return Tcl_NewStringObj(s, (int)n);
    }
    q = buf = PyMem_Malloc(2 * n);
    if (!buf) {
        PyErr_NoMemory();
        return NULL;
    }
    for (; s != e; s++) {
        if (*s) {
            *q++ = *s;
        } else {
            *q++ = '\xc0';
            *q++ = '\x80';
        }
    }
    out = Tcl_NewStringObj(buf, (int)(q - buf));
    PyMem_Free(buf);
    return out;
}

static Tcl_Obj *str_to_tcl(PyObject *v)
{
    Py_ssize_t size = PyUnicode_GET_LENGTH(v);
    PyObject *utf16;
    Tcl_Obj *out;

    if (size == 0) {
        return Tcl_NewObj();
    }
    if (size > INT_MAX / 4) {
        PyErr_SetString(PyExc_OverflowError, "string is too long for Tcl");
        return NULL;
    }
    if (PyUnicode_IS_ASCII(v)) {
        return utf8_to_tcl((const char *)PyUnicode_DATA(v), size);
    }
    if (PyUnicode_KIND(v) != PyUnicode_4BYTE_KIND) {
        Py_ssize_t n;
        const char *utf8 = PyUnicode_AsUTF8AndSize(v, &n);
        if (utf8) {
            return utf8_to_tcl(utf8, n);
        }
        PyErr_Clear();     /* lone surrogates: fall through to UTF-16 */
    }
#if TCL_UTF_MAX > 4
    utf16 = PyUnicode_AsEncodedString(v, PY_LITTLE_ENDIAN ? "utf-32-le" : "utf-32-be", "surrogatepass");
#else
    utf16 = PyUnicode_AsEncodedString(v, PY_LITTLE_ENDIAN ? "utf-16-le" : "utf-16-be", "surrogatepass");
#endif
    if (!utf16) {
        return NULL;
    }
    out = Tcl_NewUnicodeObj((const Tcl_UniChar *)PyBytes_AS_STRING(utf16),
                            (int)(PyBytes_GET_SIZE(utf16) / sizeof(Tcl_UniChar)));
    Py_DECREF(utf16);
    return out;
}

Tcl_Obj *shim_items_to_tcl(PyObject *const *items, Py_ssize_t n, Py_ssize_t at, Tcl_Obj *given)
{
    Tcl_Obj *small[16], **objs = small;
    Py_ssize_t i;

    if (n > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "list is too long for Tcl");
        return NULL;
    }
    if (n > 16) {
        objs = PyMem_Malloc(sizeof(Tcl_Obj *) * n);
        if (!objs) {
            PyErr_NoMemory();
            return NULL;
        }
    }
    for (i = 0; i < n; i++) {
        objs[i] = i == at && given ? given : shim_py_to_tcl(items[i]);
        if (!objs[i]) {
            break;
        }
    }
    return shim_list_of(objs, i, n, given, small);
}

Tcl_Obj *shim_list_of(Tcl_Obj **objs, Py_ssize_t made, Py_ssize_t n, Tcl_Obj *given,
                      Tcl_Obj **small)
{
    Tcl_Obj *list = NULL;

    if (made == n) {
        list = Tcl_NewListObj((int)n, objs);   /* takes its own references */
    } else {
        while (made-- > 0) {                   /* free the ones made (refcount 0) */
            if (objs[made] != given) {
                Tcl_IncrRefCount(objs[made]);
                Tcl_DecrRefCount(objs[made]);
            }
        }
    }
    if (objs != small) {
        PyMem_Free(objs);
    }
    return list;
}

static Tcl_Obj *dict_to_tcl(PyObject *v)
{
    Py_ssize_t pos = 0;
    PyObject *k, *val;
    Tcl_Obj *list = Tcl_NewListObj(0, NULL);

    while (PyDict_Next(v, &pos, &k, &val)) {
        Tcl_Obj *tk = shim_py_to_tcl(k), *tv = tk ? shim_py_to_tcl(val) : NULL;
        if (!tv) {
            if (tk) {
                Tcl_IncrRefCount(tk);
                Tcl_DecrRefCount(tk);
            }
            Tcl_IncrRefCount(list);
            Tcl_DecrRefCount(list);
            return NULL;
        }
        Tcl_ListObjAppendElement(NULL, list, tk);
        Tcl_ListObjAppendElement(NULL, list, tv);
    }
    return list;
}

/* The scalar values from their C values: the one home of what each becomes
 * in Tcl, for shim_py_to_tcl and for rowget.c, which reads a row's values
 * from the typed columns and must give the same text.  None is the empty
 * string, a bool 1 or 0, a float Tcl's double (its string: Tcl's shortest
 * form that reads back the same), an int a wide int while it fits in 64
 * signed bits, and its decimal digits (a string, which Tcl reads as a
 * bignum) past that. */
Tcl_Obj *shim_null_to_tcl(void)
{
    return Tcl_NewObj();
}

Tcl_Obj *shim_bool_to_tcl(int b)
{
    return Tcl_NewIntObj(b != 0);
}

Tcl_Obj *shim_double_to_tcl(double d)
{
    return Tcl_NewDoubleObj(d);
}

Tcl_Obj *shim_wide_to_tcl(long long x)
{
    return Tcl_NewWideIntObj((Tcl_WideInt)x);
}

Tcl_Obj *shim_u64_to_tcl(unsigned long long x)
{
    char digits[24];
    int n;

    if (x <= (unsigned long long)LLONG_MAX) {
        return Tcl_NewWideIntObj((Tcl_WideInt)x);
    }
    n = snprintf(digits, sizeof digits, "%llu", x);
    return Tcl_NewStringObj(digits, n);
}

Tcl_Obj *shim_py_to_tcl(PyObject *v)
{
    if (v == Py_None) {
        return shim_null_to_tcl();
    }
    if (PyUnicode_CheckExact(v)) {
        return str_to_tcl(v);
    }
    if (PyFloat_CheckExact(v)) {
        return shim_double_to_tcl(PyFloat_AS_DOUBLE(v));
    }
    if (PyBool_Check(v)) {
        return shim_bool_to_tcl(v == Py_True);
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyLong_CheckExact(v) && Py_SIZE(v) >= -1 && Py_SIZE(v) <= 1) {
        /* An int of at most one digit (|x| < 2**30): its value at once. */
        return shim_wide_to_tcl((long long)Py_SIZE(v) * ((PyLongObject *)v)->ob_digit[0]);
    }
#endif
    if (PyLong_Check(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        unsigned long long u;
        PyObject *s;
        Tcl_Obj *out;
        if (!overflow) {
            if (x == -1 && PyErr_Occurred()) {
                return NULL;
            }
            return shim_wide_to_tcl(x);
        }
        if (overflow > 0) {
            u = PyLong_AsUnsignedLongLong(v);
            if (!PyErr_Occurred()) {
                return shim_u64_to_tcl(u);
            }
            PyErr_Clear();        /* past 64 bits */
        }
        s = PyObject_Str(v);      /* beyond 64 bits: Tcl reads the digits as a bignum */
        if (!s) {
            return NULL;
        }
        out = str_to_tcl(s);
        Py_DECREF(s);
        return out;
    }
    if (PyTuple_Check(v)) {
        return shim_items_to_tcl(((PyTupleObject *)v)->ob_item, PyTuple_GET_SIZE(v), -1, NULL);
    }
    if (PyList_Check(v)) {
        /* Converting runs no Python code, so the list cannot change meanwhile. */
        return shim_items_to_tcl(((PyListObject *)v)->ob_item, PyList_GET_SIZE(v), -1, NULL);
    }
    if (PyDict_Check(v)) {
        return dict_to_tcl(v);
    }
    if (PyUnicode_Check(v)) {
        return str_to_tcl(v);
    }
    if (PyFloat_Check(v)) {
        return shim_double_to_tcl(PyFloat_AsDouble(v));
    }
    if (PyBytes_Check(v)) {
        return Tcl_NewByteArrayObj((const unsigned char *)PyBytes_AS_STRING(v),
                                   (int)PyBytes_GET_SIZE(v));
    }
    {
        PyObject *s = PyObject_Str(v);
        Tcl_Obj *out;
        if (!s) {
            return NULL;
        }
        out = str_to_tcl(s);
        Py_DECREF(s);
        return out;
    }
}

/* ---- split_list: Tcl list syntax for the Python side -------------------- */

static PyObject *split_list(PyObject *self, PyObject *arg)
{
    Tcl_Obj *obj;
    Tcl_Obj **elems;
    int n, i;
    PyObject *out = NULL;

    (void)self;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "split_list needs a str");
        return NULL;
    }
    obj = str_to_tcl(arg);
    if (!obj) {
        return NULL;
    }
    Tcl_IncrRefCount(obj);
    if (Tcl_ListObjGetElements(NULL, obj, &n, &elems) != TCL_OK) {
        PyErr_SetString(PyExc_ValueError, "not a well-formed Tcl list");
        goto done;
    }
    out = PyList_New(n);
    if (!out) {
        goto done;
    }
    for (i = 0; i < n; i++) {
        int len;
        const char *s = Tcl_GetStringFromObj(elems[i], &len);
        PyObject *e = shim_str_from_utf(s, len);
        if (!e) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, e);
    }
done:
    Tcl_DecrRefCount(obj);
    return out;
}

PyMethodDef shim_split_list_def = {
    "split_list", split_list, METH_O,
    "split_list(text) -> list of str: the elements of a Tcl list (ValueError if malformed)."
};

/* ---- errors ------------------------------------------------------------- */

int shim_usage_error(Tcl_Interp *interp, const char *detail)
{
    Tcl_Obj *code = Tcl_NewStringObj("AEROSTORE USAGE", -1);
    if (detail) {
        Tcl_ListObjAppendElement(NULL, code, Tcl_NewStringObj(detail, -1));
    }
    Tcl_SetObjErrorCode(interp, code);
    return TCL_ERROR;
}

int shim_python_error(Tcl_Interp *interp)
{
    PyObject *type, *value, *tb, *info = NULL;
    Tcl_Obj *msg = NULL, *code = NULL, *extra = NULL;

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb) {
        PyException_SetTraceback(value, tb);
    }
    if (shim_session_module && value) {
        info = PyObject_CallMethod(shim_session_module, "tcl_error", "O", value);
    }
    if (info && PyTuple_Check(info) && PyTuple_GET_SIZE(info) == 3) {
        msg = shim_py_to_tcl(PyTuple_GET_ITEM(info, 0));
        code = msg ? shim_py_to_tcl(PyTuple_GET_ITEM(info, 1)) : NULL;
        if (code && PyTuple_GET_ITEM(info, 2) != Py_None) {
            extra = shim_py_to_tcl(PyTuple_GET_ITEM(info, 2));
        }
    }
    PyErr_Clear();
    if (!msg || !code) {
        /* The mapping itself failed (out of memory...): still a Tcl error. */
        const char *name = type ? ((PyTypeObject *)type)->tp_name : "error";
        if (msg) {
            Tcl_IncrRefCount(msg);
            Tcl_DecrRefCount(msg);
        }
        msg = Tcl_ObjPrintf("aerostore: internal error (%s)", name);
        code = Tcl_NewStringObj("AEROSTORE INTERNAL", -1);
        Tcl_ListObjAppendElement(NULL, code, Tcl_NewStringObj(name, -1));
    }
    Tcl_SetObjResult(interp, msg);
    Tcl_SetObjErrorCode(interp, code);
    if (extra) {
        Tcl_AppendObjToErrorInfo(interp, extra);
    }
    Py_XDECREF(info);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return TCL_ERROR;
}
