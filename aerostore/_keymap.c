/* _keymap.c: KeyMap, a table's key -> slot map (see keymap.py for the contract).
 *
 * Why not a dict: a dict of a million str keys to int slots costs 59 bytes a
 * key (its index and entry arrays, plus an int object per slot above 256), and
 * building one from a checkpoint's key list takes 0.35 s of a 0.48 s reopen.
 * KeyMap keeps the keys in an array indexed by slot and an open-addressing
 * table of (hash, slot) pairs: about 25 bytes a key, built from a key list in
 * one presized C pass.
 *
 * Layout:
 *   keys[slot]   the key (a strong reference to an exact str) that maps to
 *                slot, or NULL; nkeys is the array's capacity;
 *   table[i]     {hash: the key's 32-bit hash (data_hash), slot}, for
 *                i < mask + 1 (a power of two); slot EMPTY: never used (ends a
 *                probe), DUMMY: a deleted key (a probe goes on past it).
 * A key is at the first index of the probe sequence hash, hash+1, ... (linear
 * probing, mask applied) whose entry holds its slot; used counts live keys,
 * fill live keys plus dummies, kept below 2/3 of the table by resizing.
 *
 * Every method runs with the GIL held and calls no Python code: keys are exact
 * str (hashing one reads its data, comparing two is a memcmp), so each call is
 * atomic for other threads, as a dict's are.
 *
 * One reader needs no GIL: lookup_ascii (the Tcl shim's `get`, inside the
 * read gate, _readgate.h).  For it, every method keeps what a reader may be
 * reading whole: a new key is stored in keys[] before its table entry, and
 * the entry's slot after its hash (release stores; the reader loads the slot
 * first, then checks the key it names, so a half-made entry is a miss);
 * whatever moves or frees memory (a resize, growing keys[], moving a key to
 * another slot, clear) holds the gate, and a removed key is let go only
 * after the readers inside have left (rg_drain).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_keymap_api.h"
#include "_readgate.h"

/* _readgate.c, linked into this module */
extern ReadGate rg_gate;
extern PyMethodDef rg_methods[];
void rg_hold(void);
void rg_release(void);
void rg_drain(void);
int rg_keep(PyObject *refs, uint64_t layout);

#define EMPTY (-1)
#define DUMMY (-2)
#define MIN_SIZE 8

typedef struct {
    uint32_t hash;
    int32_t slot;
} Entry;

typedef struct {
    PyObject_HEAD
    Entry *table;
    Py_ssize_t mask;
    Py_ssize_t used;
    Py_ssize_t fill;
    PyObject **keys;
    Py_ssize_t nkeys;
} KeyMap;

static PyTypeObject KeyMapType;

/* ---- the table ---------------------------------------------------------- */

static int
str_eq(PyObject *a, PyObject *b)
{
    Py_ssize_t n;
    int kind;
    if (a == b)
        return 1;
    n = PyUnicode_GET_LENGTH(a);
    kind = PyUnicode_KIND(a);
    return n == PyUnicode_GET_LENGTH(b) && kind == PyUnicode_KIND(b)
           && memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * (size_t)kind) == 0;
}

/* The table index holding key (hash h), or -1. */
static Py_ssize_t
find(KeyMap *m, PyObject *key, uint32_t h)
{
    Py_ssize_t i = (Py_ssize_t)h & m->mask;
    for (;;) {
        Entry *e = &m->table[i];
        if (e->slot == EMPTY)
            return -1;
        if (e->slot >= 0 && e->hash == h && str_eq(m->keys[e->slot], key))
            return i;
        i = (i + 1) & m->mask;
    }
}

/* Place (h, slot) at the first free index of its probe; the table has no such key
 * and no dummy (a fresh table). */
static void
place(Entry *table, Py_ssize_t mask, uint32_t h, int32_t slot)
{
    Py_ssize_t i = (Py_ssize_t)h & mask;
    while (table[i].slot != EMPTY)
        i = (i + 1) & mask;
    table[i].hash = h;
    table[i].slot = slot;
}

static Entry *
new_table(Py_ssize_t size)
{
    Entry *t;
    if ((size_t)size > PY_SSIZE_T_MAX / sizeof(Entry)) {
        PyErr_NoMemory();
        return NULL;
    }
    t = PyMem_Malloc((size_t)size * sizeof(Entry));
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memset(t, 0xff, (size_t)size * sizeof(Entry));     /* every slot EMPTY (-1) */
    return t;
}

/* A table for at least n live keys (below 2/3 full), rehashed from the old one. */
static int
resize(KeyMap *m, Py_ssize_t n)
{
    Py_ssize_t size = MIN_SIZE, i;
    Entry *t;
    while (size * 2 <= n * 3) {
        if (size > PY_SSIZE_T_MAX / 4) {
            PyErr_NoMemory();
            return -1;
        }
        size <<= 1;
    }
    if (size > ((Py_ssize_t)1 << 31)) {
        PyErr_SetString(PyExc_OverflowError, "KeyMap: more than 2**30 keys");
        return -1;
    }
    t = new_table(size);
    if (t == NULL)
        return -1;
    if (m->table != NULL) {
        for (i = 0; i <= m->mask; i++)
            if (m->table[i].slot >= 0)
                place(t, size - 1, m->table[i].hash, m->table[i].slot);
        rg_hold();                  /* no gate reader reads the old table and mask */
        PyMem_Free(m->table);
        m->table = t;
        m->mask = size - 1;
        rg_release();
    } else {
        m->table = t;
        m->mask = size - 1;
    }
    m->fill = m->used;
    return 0;
}

static int
grow_keys(KeyMap *m, Py_ssize_t slot)
{
    Py_ssize_t n = m->nkeys + (m->nkeys >> 2) + 16;
    PyObject **k;
    if (n <= slot)
        n = slot + 1;
    if ((size_t)n > PY_SSIZE_T_MAX / sizeof(PyObject *))
        return PyErr_NoMemory(), -1;
    rg_hold();                      /* the array may move: no gate reader inside */
    k = PyMem_Realloc(m->keys, (size_t)n * sizeof(PyObject *));
    if (k != NULL) {
        memset(k + m->nkeys, 0, (size_t)(n - m->nkeys) * sizeof(PyObject *));
        m->keys = k;
        m->nkeys = n;
    }
    rg_release();
    if (k == NULL)
        return PyErr_NoMemory(), -1;
    return 0;
}

/* The seed of every hash: CPython's hash of a constant string, so it changes with
 * the process's hash randomization (PYTHONHASHSEED) as a dict's hashes do. */
static uint64_t seed;

/* A str's hash: a multiply-xorshift over its data, 8 bytes a step.  Why not the
 * str's own (siphash, cached in the object): a key map is mostly built from
 * fresh strings (a checkpoint's keys, a Tcl key), whose siphash costs 60 ms a
 * million keys; this one costs a few.  The trade: no cryptographic strength
 * against keys chosen to collide, only the per-process seed.  Equal strs have
 * the same kind and data, so they hash the same. */
static uint32_t
bytes_hash(const unsigned char *p, size_t n)
{
    uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ULL), w;
    while (n >= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n) {
        /* the last 1-7 bytes as a little-endian word, byte by byte: a
         * memcpy of this variable length made building a map of 10-byte
         * keys 2.5x slower (docs/decisions.md, eighth session) */
        w = 0;
        while (n--)
            w |= (uint64_t)p[n] << (8 * n);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    h *= 0x94D049BB133111EBULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

static inline uint32_t
data_hash(PyObject *key)
{
    return bytes_hash(PyUnicode_DATA(key), (size_t)PyUnicode_GET_LENGTH(key) * (size_t)PyUnicode_KIND(key));
}

/* True if key can be in a KeyMap (an exact str). */
#define IS_KEY(key) PyUnicode_CheckExact(key)

static int
slot_value(PyObject *v, int32_t *slot)
{
    long s = PyLong_AsLong(v);
    if (s == -1 && PyErr_Occurred())
        return -1;
    if (s < 0 || s > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "KeyMap: slot %ld out of range 0..2**31-1", s);
        return -1;
    }
    *slot = (int32_t)s;
    return 0;
}

/* m[key] = slot.  A key given a new slot leaves its old one; a slot that holds
 * another key is refused (ValueError): each slot has at most one key. */
static int
set_item(KeyMap *m, PyObject *key, int32_t slot)
{
    uint32_t h;
    Py_ssize_t i;
    if (!IS_KEY(key)) {
        PyErr_Format(PyExc_TypeError, "KeyMap keys are str, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    h = data_hash(key);
    if (slot >= m->nkeys && grow_keys(m, slot) < 0)
        return -1;
    i = find(m, key, h);
    if (i >= 0) {
        int32_t old = m->table[i].slot;
        if (old == slot)
            return 0;
        if (m->keys[slot] != NULL) {
            PyErr_Format(PyExc_ValueError, "KeyMap: slot %d already holds another key", (int)slot);
            return -1;
        }
        rg_hold();
        m->keys[slot] = m->keys[old];           /* the reference moves */
        m->keys[old] = NULL;
        m->table[i].slot = slot;
        rg_release();
        return 0;
    }
    if (m->keys[slot] != NULL) {
        PyErr_Format(PyExc_ValueError, "KeyMap: slot %d already holds another key", (int)slot);
        return -1;
    }
    if ((m->fill + 1) * 3 >= (m->mask + 1) * 2 && resize(m, m->used + 1) < 0)
        return -1;
    i = (Py_ssize_t)h & m->mask;
    while (m->table[i].slot >= 0)               /* the first empty or dummy of the probe */
        i = (i + 1) & m->mask;
    if (m->table[i].slot == EMPTY)
        m->fill++;
    Py_INCREF(key);
    __atomic_store_n(&m->keys[slot], key, __ATOMIC_RELEASE);     /* the key, then its entry */
    m->table[i].hash = h;
    __atomic_store_n(&m->table[i].slot, slot, __ATOMIC_RELEASE);
    m->used++;
    return 0;
}

/* The slot of key, -1 if absent (a key that is not a str is absent).  Sets no
 * exception. */
static Py_ssize_t
lookup(KeyMap *m, PyObject *key)
{
    Py_ssize_t i;
    if (!IS_KEY(key))
        return -1;
    i = find(m, key, data_hash(key));
    return i < 0 ? -1 : m->table[i].slot;
}

/* Remove key; its slot, or -1 if absent.  Sets no exception. */
static Py_ssize_t
remove_key(KeyMap *m, PyObject *key)
{
    Py_ssize_t i;
    int32_t slot;
    PyObject *k;
    if (!IS_KEY(key))
        return -1;
    i = find(m, key, data_hash(key));
    if (i < 0)
        return -1;
    slot = m->table[i].slot;
    __atomic_store_n(&m->table[i].slot, DUMMY, __ATOMIC_RELEASE);
    k = m->keys[slot];
    __atomic_store_n(&m->keys[slot], NULL, __ATOMIC_RELEASE);
    m->used--;
    rg_drain();                     /* a gate reader may still be comparing it */
    Py_DECREF(k);
    return slot;
}

/* ---- the type ------------------------------------------------------------ */

static int
km_init(KeyMap *m, PyObject *args, PyObject *kw)
{
    if ((args != NULL && PyTuple_GET_SIZE(args)) || (kw != NULL && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "KeyMap() takes no arguments (see KeyMap.from_keys)");
        return -1;
    }
    if (m->table == NULL && resize(m, 0) < 0)
        return -1;
    return 0;
}

static void
clear_keys(KeyMap *m)
{
    Py_ssize_t i;
    PyObject **keys = m->keys;
    Py_ssize_t n = m->nkeys;
    m->keys = NULL;
    m->nkeys = 0;
    m->used = m->fill = 0;
    for (i = 0; i < n; i++)
        Py_XDECREF(keys[i]);
    PyMem_Free(keys);
}

static void
km_dealloc(KeyMap *m)
{
    clear_keys(m);
    PyMem_Free(m->table);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static Py_ssize_t
km_len(KeyMap *m)
{
    return m->used;
}

static PyObject *
km_subscript(KeyMap *m, PyObject *key)
{
    Py_ssize_t s = lookup(m, key);
    if (s >= 0)
        return PyLong_FromSsize_t(s);
    PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

static int
km_ass_subscript(KeyMap *m, PyObject *key, PyObject *v)
{
    int32_t slot;
    if (v == NULL) {
        if (remove_key(m, key) >= 0)
            return 0;
        PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    if (slot_value(v, &slot) < 0)
        return -1;
    return set_item(m, key, slot);
}

static int
km_contains(KeyMap *m, PyObject *key)
{
    return lookup(m, key) >= 0;
}

/* get(key, default=None) and pop(key[, default]): the slot found by look (which
 * may remove the key), else the default, else KeyError. */
static PyObject *
get_or_pop(KeyMap *m, PyObject *const *args, Py_ssize_t nargs,
           Py_ssize_t (*look)(KeyMap *, PyObject *), PyObject *fallback, const char *usage)
{
    Py_ssize_t s;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    s = look(m, args[0]);
    if (s >= 0)
        return PyLong_FromSsize_t(s);
    if (nargs == 2)
        return Py_NewRef(args[1]);
    if (fallback != NULL)
        return Py_NewRef(fallback);
    PyErr_SetObject(PyExc_KeyError, args[0]);
    return NULL;
}

static PyObject *
km_get(KeyMap *m, PyObject *const *args, Py_ssize_t nargs)
{
    return get_or_pop(m, args, nargs, lookup, Py_None, "get(key, default=None)");
}

static PyObject *
km_pop(KeyMap *m, PyObject *const *args, Py_ssize_t nargs)
{
    return get_or_pop(m, args, nargs, remove_key, NULL, "pop(key[, default])");
}

/* update(pairs): m[key] = slot for each (key, slot) of an iterable, in order. */
static PyObject *
km_update(KeyMap *m, PyObject *pairs)
{
    PyObject *it = PyObject_GetIter(pairs), *item;
    if (it == NULL)
        return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        int32_t slot;
        int bad = !PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2;
        if (bad)
            PyErr_SetString(PyExc_TypeError, "KeyMap.update takes (key, slot) pairs");
        if (bad || slot_value(PyTuple_GET_ITEM(item, 1), &slot) < 0
                || set_item(m, PyTuple_GET_ITEM(item, 0), slot) < 0) {
            Py_DECREF(item);
            Py_DECREF(it);
            return NULL;
        }
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* KeyMap.from_keys(keys, last=False): keys[i] -> i for a list of str keys, in one
 * presized pass.  A key given twice is a ValueError naming it; with last, its
 * last place wins (the earlier slots stay empty). */
static PyObject *
km_from_keys(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"keys", "last", NULL};
    PyObject *keys;
    int last = 0;
    KeyMap *m;
    Py_ssize_t n, i;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p:from_keys", kwlist, &keys, &last))
        return NULL;
    if (!PyList_CheckExact(keys)) {
        PyErr_SetString(PyExc_TypeError, "KeyMap.from_keys takes a list of str");
        return NULL;
    }
    n = PyList_GET_SIZE(keys);
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "KeyMap: more than 2**31-1 slots");
        return NULL;
    }
    m = (KeyMap *)type->tp_alloc(type, 0);
    if (m == NULL)
        return NULL;
    if (resize(m, n) < 0 || (n && grow_keys(m, n - 1) < 0))
        goto fail;
    for (i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        Py_ssize_t at;
        uint32_t h;
        if (!IS_KEY(key)) {
            PyErr_Format(PyExc_TypeError, "KeyMap keys are str, not %.100s", Py_TYPE(key)->tp_name);
            goto fail;
        }
        h = data_hash(key);
        at = find(m, key, h);
        if (at >= 0) {
            int32_t old = m->table[at].slot;
            if (!last) {
                PyErr_Format(PyExc_ValueError, "KeyMap.from_keys: key %R given twice", key);
                goto fail;
            }
            Py_INCREF(key);
            Py_DECREF(m->keys[old]);        /* the list still holds it */
            m->keys[old] = NULL;
            m->keys[i] = key;
            m->table[at].slot = (int32_t)i;
            continue;
        }
        place(m->table, m->mask, h, (int32_t)i);
        Py_INCREF(key);
        m->keys[i] = key;
        m->used++;
        m->fill++;
    }
    return (PyObject *)m;
fail:
    Py_DECREF(m);
    return NULL;
}

enum { KEYS, VALUES, ITEMS };

/* A list, in slot order, of the keys, the slots, or (key, slot) pairs. */
static PyObject *
slot_list(KeyMap *m, int what)
{
    PyObject *out = PyList_New(m->used);
    Py_ssize_t i, j = 0;
    if (out == NULL)
        return NULL;
    for (i = 0; i < m->nkeys && j < m->used; i++) {
        PyObject *v;
        if (m->keys[i] == NULL)
            continue;
        v = what == KEYS ? Py_NewRef(m->keys[i])
            : what == VALUES ? PyLong_FromSsize_t(i) : Py_BuildValue("(On)", m->keys[i], i);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, j++, v);
    }
    return out;
}

static PyObject *
km_keys(KeyMap *m, PyObject *unused)
{
    return slot_list(m, KEYS);
}

static PyObject *
km_values(KeyMap *m, PyObject *unused)
{
    return slot_list(m, VALUES);
}

static PyObject *
km_items(KeyMap *m, PyObject *unused)
{
    return slot_list(m, ITEMS);
}

static PyObject *
km_iter(KeyMap *m)
{
    PyObject *keys = km_keys(m, NULL), *it;
    if (keys == NULL)
        return NULL;
    it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static PyObject *
km_clear(KeyMap *m, PyObject *unused)
{
    Entry *t = new_table(MIN_SIZE), *old;
    if (t == NULL)
        return NULL;
    rg_hold();                      /* no gate reader inside while the arrays go */
    clear_keys(m);
    old = m->table;
    m->table = t;
    m->mask = MIN_SIZE - 1;
    rg_release();
    PyMem_Free(old);
    Py_RETURN_NONE;
}

static PyObject *
km_sizeof(KeyMap *m, PyObject *unused)
{
    return PyLong_FromSsize_t((Py_ssize_t)sizeof(KeyMap) + (m->mask + 1) * (Py_ssize_t)sizeof(Entry)
                              + m->nkeys * (Py_ssize_t)sizeof(PyObject *));
}

/* _check(): assert every invariant (tests); O(table + keys). */
static PyObject *
km_check(KeyMap *m, PyObject *unused)
{
    Py_ssize_t i, live = 0, dummies = 0, with_key = 0;
    for (i = 0; i < m->nkeys; i++)
        if (m->keys[i] != NULL) {
            Py_ssize_t at;
            if (!IS_KEY(m->keys[i]))
                return PyErr_Format(PyExc_AssertionError, "KeyMap: slot %zd holds a non-str", i);
            at = find(m, m->keys[i], data_hash(m->keys[i]));
            if (at < 0 || m->table[at].slot != i)
                return PyErr_Format(PyExc_AssertionError, "KeyMap: the key of slot %zd is not found there", i);
            with_key++;
        }
    for (i = 0; i <= m->mask; i++) {
        int32_t s = m->table[i].slot;
        if (s >= 0) {
            live++;
            if (s >= m->nkeys || m->keys[s] == NULL)
                return PyErr_Format(PyExc_AssertionError, "KeyMap: entry %zd names slot %d, which has no key", i, (int)s);
        } else if (s == DUMMY)
            dummies++;
        else if (s != EMPTY)
            return PyErr_Format(PyExc_AssertionError, "KeyMap: entry %zd holds slot %d", i, (int)s);
    }
    if (live != m->used || with_key != m->used || live + dummies != m->fill)
        return PyErr_Format(PyExc_AssertionError, "KeyMap: counts off (used %zd, live %zd, keys %zd, fill %zd, dummies %zd)",
                            m->used, live, with_key, m->fill, dummies);
    if (m->fill * 3 >= (m->mask + 1) * 2)
        return PyErr_Format(PyExc_AssertionError, "KeyMap: table past 2/3 full");
    Py_RETURN_NONE;
}

static PyObject *
km_reduce(KeyMap *m, PyObject *unused)
{
    PyErr_SetString(PyExc_TypeError, "a KeyMap cannot be pickled or copied");
    return NULL;
}

static PyMethodDef km_methods[] = {
    {"get", (PyCFunction)(void (*)(void))km_get, METH_FASTCALL, "get(key, default=None): the slot of key, or default."},
    {"pop", (PyCFunction)(void (*)(void))km_pop, METH_FASTCALL, "pop(key[, default]): remove key, return its slot."},
    {"update", (PyCFunction)km_update, METH_O, "update(pairs): m[key] = slot for each (key, slot)."},
    {"from_keys", (PyCFunction)(void (*)(void))km_from_keys, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "from_keys(keys, last=False): the map keys[i] -> i of a list of str keys; a key given\n"
     "twice is a ValueError, or with last its last place wins."},
    {"keys", (PyCFunction)km_keys, METH_NOARGS, "A list of the keys, in slot order."},
    {"values", (PyCFunction)km_values, METH_NOARGS, "A list of the slots, in order."},
    {"items", (PyCFunction)km_items, METH_NOARGS, "A list of (key, slot), in slot order."},
    {"clear", (PyCFunction)km_clear, METH_NOARGS, "Remove every key."},
    {"__sizeof__", (PyCFunction)km_sizeof, METH_NOARGS, "Bytes of the map's own arrays."},
    {"__reduce__", (PyCFunction)km_reduce, METH_NOARGS, NULL},
    {"_check", (PyCFunction)km_check, METH_NOARGS, "Assert every invariant; O(n)."},
    {NULL, NULL, 0, NULL}
};

static PyMappingMethods km_as_mapping = {
    (lenfunc)km_len, (binaryfunc)km_subscript, (objobjargproc)km_ass_subscript,
};

static PySequenceMethods km_as_sequence = {
    .sq_length = (lenfunc)km_len,
    .sq_contains = (objobjproc)km_contains,
};

static PyTypeObject KeyMapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aerostore._keymap.KeyMap",
    .tp_basicsize = sizeof(KeyMap),
    .tp_dealloc = (destructor)km_dealloc,
    .tp_as_sequence = &km_as_sequence,
    .tp_as_mapping = &km_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A table's key -> slot map (aerostore/keymap.py).",
    .tp_iter = (getiterfunc)km_iter,
    .tp_methods = km_methods,
    .tp_init = (initproc)km_init,
    .tp_new = PyType_GenericNew,
};

/* ---- the C API the Tcl shim calls (c_shim/rowget.c) ---------------------- */

/* The slot of the key whose str would be the n ASCII bytes s (no NUL), or -1
 * (absent, or an entry being written).  No GIL: the caller is inside the read
 * gate (rg_enter), so the arrays stay where they are and the keys alive; a
 * probe is bounded by the table's size. */
static Py_ssize_t
capi_lookup_ascii(PyObject *map, const char *s, Py_ssize_t n)
{
    KeyMap *m = (KeyMap *)map;
    uint32_t h = bytes_hash((const unsigned char *)s, (size_t)n);
    Entry *t = m->table;
    Py_ssize_t mask = m->mask, i = (Py_ssize_t)h & mask, probes;
    PyObject **keys = m->keys;
    Py_ssize_t nkeys = m->nkeys;

    if (t == NULL)
        return -1;
    for (probes = 0; probes <= mask; probes++, i = (i + 1) & mask) {
        int32_t slot = __atomic_load_n(&t[i].slot, __ATOMIC_ACQUIRE);
        PyObject *k;
        if (slot == EMPTY)
            return -1;
        if (slot < 0 || slot >= nkeys || __atomic_load_n(&t[i].hash, __ATOMIC_RELAXED) != h)
            continue;
        k = __atomic_load_n(&keys[slot], __ATOMIC_ACQUIRE);
        if (k != NULL && PyUnicode_IS_COMPACT_ASCII(k) && PyUnicode_GET_LENGTH(k) == n
                && memcmp(PyUnicode_DATA(k), s, (size_t)n) == 0)
            return slot;
    }
    return -1;
}

/* The slot of key in map (a KeyMap), -1 if absent or not a str; sets no exception. */
static Py_ssize_t
capi_lookup(PyObject *map, PyObject *key)
{
    return lookup((KeyMap *)map, key);
}

static KeyMapAPI capi;             /* the capsule's (_keymap_api.h) */

static struct PyModuleDef keymap_module = {
    PyModuleDef_HEAD_INIT, "aerostore._keymap", "KeyMap: a table's key -> slot map.", -1, NULL,
};

PyMODINIT_FUNC
PyInit__keymap(void)
{
    PyObject *mod, *caps, *probe;
    Py_hash_t ph;
    if (PyType_Ready(&KeyMapType) < 0)
        return NULL;
    probe = PyUnicode_FromString("aerostore.keymap");
    ph = probe ? PyObject_Hash(probe) : -1;
    Py_XDECREF(probe);
    if (ph == -1)
        return NULL;
    seed = (uint64_t)(Py_uhash_t)ph;
    mod = PyModule_Create(&keymap_module);
    if (mod == NULL)
        return NULL;
    capi.size = sizeof capi;
    capi.type = &KeyMapType;
    capi.lookup = capi_lookup;
    capi.lookup_ascii = capi_lookup_ascii;
    capi.gate = &rg_gate;
    capi.keep = rg_keep;
    capi.drain = rg_drain;
    if (PyModule_AddFunctions(mod, rg_methods) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    caps = PyCapsule_New(&capi, "aerostore._keymap._C_API", NULL);
    if (caps == NULL || PyModule_AddObject(mod, "_C_API", caps) < 0) {
        Py_XDECREF(caps);
        Py_DECREF(mod);
        return NULL;
    }
    Py_INCREF(&KeyMapType);
    if (PyModule_AddObject(mod, "KeyMap", (PyObject *)&KeyMapType) < 0) {
        Py_DECREF(&KeyMapType);
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
