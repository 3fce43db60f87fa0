/*
 * Option words and values of the Tcl commands, read by Tcl itself.
 *
 * The word by Tcl_GetIndexFromObjStruct (unique prefixes; Tcl's own
 * `bad option "-x": must be -a, -b, or -c` and `ambiguous option` messages),
 * an integer value by Tcl_GetWideIntFromObj and a boolean by
 * Tcl_GetBooleanFromObj, on the caller's Tcl_Obj itself: `0x10`, `010`
 * (octal 8), `true`, `of`, `2.0` mean what they mean to Tcl, and a value keeps
 * its internal representation.  Errors carry the errorCodes of docs/tcl.md
 * (AEROSTORE USAGE OPTION word, AEROSTORE USAGE VALUE option); a value quoted
 * in a message is shortened as Tcl shortens them, by Tcl_AppendLimitedToObj
 * (60 bytes, or 57 and "...").
 */
#include "shim.h"

#include <stdio.h>

int shim_lookup(Tcl_Interp *interp, Tcl_Obj *word, const void *table, int size,
                const char *what, const char *code_word, int *idx)
{
    Tcl_Obj *code;

    if (Tcl_GetIndexFromObjStruct(interp, word, table, size, what, 0, idx) == TCL_OK) {
        return TCL_OK;
    }
    code = Tcl_NewStringObj("AEROSTORE USAGE", -1);
    Tcl_ListObjAppendElement(NULL, code, Tcl_NewStringObj(code_word, -1));
    Tcl_ListObjAppendElement(NULL, code, word);
    Tcl_SetObjErrorCode(interp, code);
    return TCL_ERROR;
}

int shim_usage_message(Tcl_Interp *interp, Tcl_Obj *message, const char *word, const char *detail)
{
    Tcl_Obj *code = Tcl_NewStringObj("AEROSTORE USAGE", -1);

    Tcl_ListObjAppendElement(NULL, code, Tcl_NewStringObj(word, -1));
    if (detail) {
        Tcl_ListObjAppendElement(NULL, code, Tcl_NewStringObj(detail, -1));
    }
    Tcl_SetObjResult(interp, message);
    Tcl_SetObjErrorCode(interp, code);
    return TCL_ERROR;
}

int shim_missing_value(Tcl_Interp *interp, const char *option)
{
    return shim_usage_message(interp, Tcl_ObjPrintf("\"%s\" option requires an additional argument",
                              option), "OPTION", option);
}

/* `expected <what> but got "<value, shortened>" for <option>` */
static int bad_value(Tcl_Interp *interp, const char *what, Tcl_Obj *value, const char *option)
{
    int len;
    const char *s = Tcl_GetStringFromObj(value, &len);
    Tcl_Obj *msg = Tcl_ObjPrintf("expected %s but got \"", what);

    Tcl_AppendLimitedToObj(msg, s, len, 60, "...");
    Tcl_AppendStringsToObj(msg, "\" for ", option, NULL);
    return shim_usage_message(interp, msg, "VALUE", option);
}

int shim_option(Tcl_Interp *interp, int objc, Tcl_Obj *const objv[], int i,
                const ShimOption *options, int *idx, ShimOptionValue *out)
{
    const ShimOption *o;

    out->obj = NULL;
    out->num = 0;
    if (shim_lookup(interp, objv[i], options, sizeof *options, "option", "OPTION", idx) != TCL_OK) {
        return TCL_ERROR;
    }
    o = &options[*idx];
    if (o->kind == SHIM_OPT_FLAG) {
        return TCL_OK;
    }
    if (i + 1 >= objc) {
        return shim_missing_value(interp, o->name);
    }
    out->obj = objv[i + 1];
    if (o->kind == SHIM_OPT_INT) {
        if (Tcl_GetWideIntFromObj(NULL, out->obj, &out->num) != TCL_OK) {
            return bad_value(interp, "integer", out->obj, o->name);
        }
        if (o->rule && out->num < o->min) {
            char num[32];
            snprintf(num, sizeof num, "%lld", (long long)out->num);
            return shim_usage_message(interp, Tcl_ObjPrintf("bad %s \"%s\": must be %s", o->name,
                                      num, o->rule), "VALUE", o->name);
        }
    } else if (o->kind == SHIM_OPT_BOOL) {
        int b;
        if (Tcl_GetBooleanFromObj(NULL, out->obj, &b) != TCL_OK) {
            return bad_value(interp, "boolean value", out->obj, o->name);
        }
        out->num = b;
    }
    return TCL_OK;
}

int shim_value_options(Tcl_Interp *interp, int objc, Tcl_Obj *const objv[], int i,
                       const ShimOption *options, Tcl_Obj **vals)
{
    ShimOptionValue v;
    int idx;

    for (; i < objc; i += 2) {
        if (shim_option(interp, objc, objv, i, options, &idx, &v) != TCL_OK) {
            return TCL_ERROR;
        }
        vals[idx] = v.obj;
    }
    return TCL_OK;
}
