/* _keymap_api.h: the C API aerostore._keymap publishes in its _C_API capsule,
 * for the Tcl shim (c_shim/rowget.c).  One definition for both sides; `size`
 * comes first, so that a shim built against another layout (a stale build)
 * sees the difference and does without the fast paths. */
#ifndef AEROSTORE_KEYMAP_API_H
#define AEROSTORE_KEYMAP_API_H

#include <Python.h>
#include <stdint.h>

#include "_readgate.h"

typedef struct KeyMapAPI {
    size_t size;                /* sizeof(KeyMapAPI) */
    PyTypeObject *type;         /* KeyMap */
    /* the slot of key in a KeyMap, -1 if absent or not a str; no exception set; GIL held */
    Py_ssize_t (*lookup)(PyObject *, PyObject *);
    /* the same for the n ASCII bytes of a key; no GIL, inside the read gate */
    Py_ssize_t (*lookup_ascii)(PyObject *, const char *, Py_ssize_t);
    ReadGate *gate;             /* the process's read gate */
    int (*keep)(PyObject *, uint64_t);  /* rg_keep (_readgate.c); GIL held */
    void (*drain)(void);        /* rg_drain; GIL held */
} KeyMapAPI;

#endif
