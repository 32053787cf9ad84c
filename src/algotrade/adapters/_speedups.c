/* The collector's hot path in C: Binance depth frames into events, and the order book.
 *
 * Optional: algotrade/adapters/speedups.py imports this module when it was built and falls
 * back to the pure-Python code (algotrade.domain.book.OrderBook and
 * algotrade.adapters.binance.messages) when it was not. Both give the same results; the
 * tests run each case through both (tests/unit/test_speedups.py).
 *
 * scan_depth(frame, receive_ts) reads only a strict subset of JSON: the combined-stream
 * depth frame as Binance writes it (no escapes, printable ASCII, integer ids, each field
 * once, no other field). Anything else returns None and the caller parses the frame the
 * slow way, which also raises the errors: the fast path never decides a frame is bad.
 * Price and quantity texts become decimals through the caller's decimal_of (the one
 * place texts become numbers), cached here by their bytes.
 *
 * Book mirrors OrderBook exactly (the same window of sorted prices near the top, the same
 * edge), with prices compared as the Decimal objects they are.
 *
 * Events are built like the Python code's generated copiers build them: a new instance of
 * the frozen, slotted dataclass, each slot stored through its member descriptor's offset.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include "_history.h"

/* ---- configuration, set once by speedups.py ------------------------------------------ */

enum { D_STREAM, D_VERSION, D_EXCHANGE_TS, D_RECEIVE_TS, D_EXCHANGE, D_SYMBOL, D_FIRST,
       D_FINAL, D_BIDS, D_ASKS, D_TOP, D_FIELDS };
enum { T_BID_PRICE, T_BID_QTY, T_ASK_PRICE, T_ASK_QTY, T_FIELDS };

static PyTypeObject *depth_cls = NULL;
static PyTypeObject *top_cls = NULL;
static Py_ssize_t depth_off[D_FIELDS];
static Py_ssize_t top_off[T_FIELDS];
static PyObject *decimal_of = NULL;  /* text -> Decimal, raising on a bad text */
static PyObject *exchange_name = NULL;
static PyObject *zero = NULL;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static int
offsets(PyObject *descriptors, Py_ssize_t *out, Py_ssize_t count)
{
    if (!PyTuple_Check(descriptors) || PyTuple_GET_SIZE(descriptors) != count) {
        PyErr_Format(PyExc_TypeError, "expected a tuple of %zd slot descriptors", count);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *d = PyTuple_GET_ITEM(descriptors, i);
        if (!PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
            PyErr_SetString(PyExc_TypeError, "not a slot descriptor");
            return -1;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
            PyErr_SetString(PyExc_TypeError, "not a writable object slot");
            return -1;
        }
        out[i] = m->offset;
    }
    return 0;
}

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *dcls, *dslots, *tcls, *tslots, *conv, *exchange;
    if (!PyArg_ParseTuple(args, "O!OO!OOU", &PyType_Type, &dcls, &dslots, &PyType_Type,
                          &tcls, &tslots, &conv, &exchange))
        return NULL;
    if (offsets(dslots, depth_off, D_FIELDS) < 0 || offsets(tslots, top_off, T_FIELDS) < 0)
        return NULL;
    Py_INCREF(dcls);
    Py_XSETREF(depth_cls, (PyTypeObject *)dcls);
    Py_INCREF(tcls);
    Py_XSETREF(top_cls, (PyTypeObject *)tcls);
    Py_INCREF(conv);
    Py_XSETREF(decimal_of, conv);
    Py_INCREF(exchange);
    Py_XSETREF(exchange_name, exchange);
    Py_RETURN_NONE;
}

/* A new instance of a frozen, slotted dataclass with ``values`` (borrowed; NULL: left
 * unset) in the slots at ``off``. */
static PyObject *
new_instance(PyTypeObject *cls, const Py_ssize_t *off, PyObject *const *values, int count)
{
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (obj == NULL)
        return NULL;
    for (int i = 0; i < count; i++) {
        Py_XINCREF(values[i]);
        SLOT(obj, off[i]) = values[i];
    }
    return obj;
}

static PyObject *
new_top(PyObject *bid, PyObject *bid_qty, PyObject *ask, PyObject *ask_qty)
{
    PyObject *values[T_FIELDS] = {bid, bid_qty, ask, ask_qty};
    return new_instance(top_cls, top_off, values, T_FIELDS);
}

/* ---- decimals cached by their text's bytes -------------------------------------------
 *
 * A dense array of entries in the order they came, and an open-addressing index into it
 * that grows with them: the entries of the texts in use stay close together (a table of
 * a fixed 64k slots spread them over megabytes, one cache miss a lookup). Bounded like
 * decimals.py's table: emptied when full. Texts longer than KEY_MAX bytes are not cached.
 */

#define KEY_MAX 20
typedef struct {
    PyObject *value;
    uint32_t hash;
    char key[KEY_MAX]; /* zero-padded: a JSON string scanned here holds no zero byte */
} Entry;               /* 32 bytes: two to a cache line */

#define TABLE_MAX 65536
static Entry *entries = NULL; /* TABLE_MAX of them */
static Py_ssize_t used = 0;
static uint32_t *slots = NULL; /* 0: empty, else an index into entries + 1 */
static size_t slot_mask = 0;

static void
table_clear(void)
{
    for (Py_ssize_t i = 0; i < used; i++)
        Py_CLEAR(entries[i].value);
    used = 0;
    if (slots != NULL)
        memset(slots, 0, (slot_mask + 1) * sizeof(uint32_t));
}

/* A hash of a zero-padded text, never 0. */
static inline uint32_t
text_hash(const char *key)
{
    uint64_t a, b;
    uint32_t c;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    memcpy(&c, key + 16, 4);
    uint64_t h = (a ^ 0x9E3779B97F4A7C15ULL) * 0x9FB21C651E98DF25ULL;
    h = ((h ^ (h >> 31)) ^ b) * 0x9FB21C651E98DF25ULL;
    h = ((h ^ (h >> 31)) ^ c) * 0xFF51AFD7ED558CCDULL;
    h ^= h >> 33; /* murmur3's finaliser: every input bit reaches the low bits */
    h *= 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 33;
    uint32_t out = (uint32_t)(h ^ (h >> 32));
    return out ? out : 1;
}

/* Make the index twice as large (or its first size), placing every entry again. */
static int
table_grow(void)
{
    size_t size = slot_mask ? 2 * (slot_mask + 1) : 4096;
    uint32_t *grown = PyMem_Calloc(size, sizeof(uint32_t));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < used; i++) {
        size_t at = entries[i].hash & (size - 1);
        while (grown[at])
            at = (at + 1) & (size - 1);
        grown[at] = (uint32_t)i + 1;
    }
    PyMem_Free(slots);
    slots = grown;
    slot_mask = size - 1;
    return 0;
}

static PyObject *
decimal_of_text(const char *p, Py_ssize_t n)
{
    PyObject *text = PyUnicode_DecodeASCII(p, n, NULL);
    if (text == NULL)
        return NULL;
    PyObject *value = PyObject_CallOneArg(decimal_of, text);
    Py_DECREF(text);
    return value;
}

/* The entry of a zero-padded key hashing to h, or NULL. */
static inline Entry *
table_find(const char *key, uint32_t h)
{
    for (size_t i = h & slot_mask; slots[i] != 0; i = (i + 1) & slot_mask) {
        Entry *e = &entries[slots[i] - 1];
        if (e->hash == h && memcmp(e->key, key, KEY_MAX) == 0)
            return e;
    }
    return NULL;
}

/* A new reference to the decimal the text ``p[:n]`` (zero-padded in ``key``, hashing to
 * ``h``) spells, made by decimal_of and cached; NULL with an exception if it spells none. */
static PyObject *
table_add(const char *p, Py_ssize_t n, const char *key, uint32_t h)
{
    PyObject *value = decimal_of_text(p, n);
    if (value == NULL || n > KEY_MAX)
        return value;
    Entry *known = table_find(key, h); /* decimal_of may have run anything */
    if (known != NULL) {
        Py_DECREF(value);
        Py_INCREF(known->value);
        return known->value;
    }
    if (used == TABLE_MAX)
        table_clear();
    if ((size_t)(used + 1) * 2 > slot_mask + 1 && table_grow() < 0) {
        Py_DECREF(value);
        return NULL;
    }
    size_t i = h & slot_mask;
    while (slots[i])
        i = (i + 1) & slot_mask;
    Entry *e = &entries[used];
    e->hash = h;
    memcpy(e->key, key, KEY_MAX);
    Py_INCREF(value);
    e->value = value;
    slots[i] = (uint32_t)++used;
    return value;
}

/* A text of a frame on its way to its decimal. */
typedef struct {
    const char *p;
    Py_ssize_t n;
    uint32_t h;
    char key[KEY_MAX];
} Text;

/* Resolve ``count`` texts into new references in ``out``; -1 with an exception when one
 * spells no decimal (those resolved before it are released). The lookups go in stages,
 * each touching one kind of memory for every text before the next (the index, the
 * entries, the decimals): the cache misses of the texts overlap instead of queueing. */
static int
resolve(Text *texts, Py_ssize_t count, PyObject **out)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        Text *t = &texts[i];
        if (t->n > KEY_MAX)
            continue;
        memset(t->key, 0, KEY_MAX);
        memcpy(t->key, t->p, t->n);
        t->h = text_hash(t->key);
        __builtin_prefetch(&slots[t->h & slot_mask]);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        uint32_t at = texts[i].n > KEY_MAX ? 0 : slots[texts[i].h & slot_mask];
        out[i] = at ? (PyObject *)&entries[at - 1] : NULL; /* a guess, checked below */
        if (at)
            __builtin_prefetch(out[i]);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Text *t = &texts[i];
        Entry *e = (Entry *)out[i];
        if (e == NULL || e->hash != t->h || memcmp(e->key, t->key, KEY_MAX) != 0)
            e = t->n > KEY_MAX ? NULL : table_find(t->key, t->h);
        out[i] = e ? e->value : NULL;
        if (e)
            __builtin_prefetch(e->value);
    }
    for (Py_ssize_t i = 0; i < count; i++)
        Py_XINCREF(out[i]);
    for (Py_ssize_t i = 0; i < count; i++) {
        Text *t = &texts[i];
        if (out[i] == NULL && (out[i] = table_add(t->p, t->n, t->key, t->h)) == NULL) {
            for (Py_ssize_t j = 0; j < count; j++)
                Py_XDECREF(out[j]);
            return -1;
        }
    }
    return 0;
}

static PyObject *
forget(PyObject *self, PyObject *unused)
{
    table_clear();
    Py_RETURN_NONE;
}

/* ---- the frame scanner --------------------------------------------------------------- */

typedef struct {
    const char *p;
    const char *end;
} Cursor;

static inline void
skip_ws(Cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static inline int
take(Cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A JSON string without escapes, of printable ASCII only. */
static inline int
take_string(Cursor *c, const char **s, Py_ssize_t *n)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"')
        return 0;
    const char *q = ++c->p;
    while (q < c->end) {
        unsigned char ch = (unsigned char)*q;
        if (ch == '"') {
            *s = c->p;
            *n = q - c->p;
            c->p = q + 1;
            return 1;
        }
        if (ch < 0x20 || ch >= 0x7f || ch == '\\')
            return 0;
        q++;
    }
    return 0;
}

/* A JSON integer of at most 18 digits, not negative. */
static inline int
take_uint(Cursor *c, long long *out)
{
    skip_ws(c);
    const char *q = c->p;
    if (q >= c->end || *q < '0' || *q > '9')
        return 0;
    if (*q == '0' && q + 1 < c->end && q[1] >= '0' && q[1] <= '9')
        return 0;
    long long v = 0;
    int digits = 0;
    while (q < c->end && *q >= '0' && *q <= '9') {
        if (++digits > 18)
            return 0;
        v = v * 10 + (*q - '0');
        q++;
    }
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E'))
        return 0;
    c->p = q;
    *out = v;
    return 1;
}

#define MAX_LEVELS 1024
#define CHUNK 32 /* pairs resolved together */

/* Turn the chunk's texts into (price, quantity) tuples appended to ``pairs``. */
static int
flush_chunk(Text *texts, Py_ssize_t pending, PyObject **pairs, Py_ssize_t *count)
{
    PyObject *values[2 * CHUNK];
    if (resolve(texts, 2 * pending, values) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < pending; i++) {
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            for (Py_ssize_t j = 2 * i; j < 2 * pending; j++)
                Py_DECREF(values[j]);
            return -1;
        }
        PyTuple_SET_ITEM(pair, 0, values[2 * i]);
        PyTuple_SET_ITEM(pair, 1, values[2 * i + 1]);
        pairs[(*count)++] = pair;
    }
    return 0;
}

/* ``[["price","qty"], ...]`` as a tuple of (Decimal, Decimal); NULL when not that (an
 * exception is set only when decimal_of raised or memory ran out). */
static PyObject *
take_levels(Cursor *c)
{
    PyObject *pairs[MAX_LEVELS];
    Text texts[2 * CHUNK];
    Py_ssize_t count = 0, pending = 0;
    if (!take(c, '['))
        return NULL;
    if (!take(c, ']')) {
        do {
            Text *price = &texts[2 * pending], *qty = price + 1;
            if (count + pending == MAX_LEVELS || !take(c, '[') ||
                !take_string(c, &price->p, &price->n) || !take(c, ',') ||
                !take_string(c, &qty->p, &qty->n) || !take(c, ']'))
                goto fail;
            if (++pending == CHUNK) {
                if (flush_chunk(texts, pending, pairs, &count) < 0)
                    goto fail;
                pending = 0;
            }
        } while (take(c, ','));
        if (!take(c, ']') || (pending && flush_chunk(texts, pending, pairs, &count) < 0))
            goto fail;
    }
    PyObject *out = PyTuple_New(count);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < count; i++)
        PyTuple_SET_ITEM(out, i, pairs[i]);
    return out;
fail:
    for (Py_ssize_t i = 0; i < count; i++)
        Py_DECREF(pairs[i]);
    return NULL;
}

/* Symbols and their stream names, made once. */
#define SYMBOLS 64
static struct {
    PyObject *symbol; /* str */
    PyObject *stream; /* "depth-" + symbol */
} symbols[SYMBOLS];

static int
symbol_of(const char *s, Py_ssize_t n, PyObject **symbol, PyObject **stream)
{
    int i;
    for (i = 0; i < SYMBOLS && symbols[i].symbol != NULL; i++) {
        PyObject *known = symbols[i].symbol;
        if (PyUnicode_GET_LENGTH(known) == n && memcmp(PyUnicode_DATA(known), s, n) == 0) {
            *symbol = known;
            *stream = symbols[i].stream;
            return 0;
        }
    }
    PyObject *sym = PyUnicode_DecodeASCII(s, n, NULL);
    if (sym == NULL)
        return -1;
    PyObject *str = PyUnicode_FromFormat("depth-%U", sym);
    if (str == NULL) {
        Py_DECREF(sym);
        return -1;
    }
    if (i == SYMBOLS) { /* full: forget them all (more than 64 symbols in one process) */
        for (i = 0; i < SYMBOLS; i++) {
            Py_CLEAR(symbols[i].symbol);
            Py_CLEAR(symbols[i].stream);
        }
        i = 0;
    }
    symbols[i].symbol = sym;
    symbols[i].stream = str;
    *symbol = sym;
    *stream = str;
    return 0;
}

enum { F_E = 1, F_EVENT_TIME = 2, F_S = 4, F_FIRST = 8, F_FINAL = 16, F_B = 32, F_A = 64,
       F_ALL = 127 };

/* scan_depth(frame: bytes | str, receive_ts: int) -> DepthDiffReceived | None */
static PyObject *
scan_depth(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scan_depth(frame, receive_ts)");
        return NULL;
    }
    if (depth_cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "scan_depth before configure");
        return NULL;
    }
    PyObject *frame = args[0], *receive_ts = args[1];
    Cursor c;
    if (PyBytes_Check(frame)) {
        c.p = PyBytes_AS_STRING(frame);
        c.end = c.p + PyBytes_GET_SIZE(frame);
    }
    else if (PyUnicode_Check(frame) && PyUnicode_IS_COMPACT_ASCII(frame)) {
        c.p = (const char *)PyUnicode_DATA(frame);
        c.end = c.p + PyUnicode_GET_LENGTH(frame);
    }
    else
        Py_RETURN_NONE;

    const char *s, *stream_s = NULL, *sym_s = NULL;
    Py_ssize_t n, stream_n = 0, sym_n = 0;
    long long event_time = 0, first = 0, final = 0;
    PyObject *bids = NULL, *asks = NULL;
    int seen = 0;

    if (!take(&c, '{') || !take_string(&c, &s, &n) || n != 6 || memcmp(s, "stream", 6) != 0 ||
        !take(&c, ':') || !take_string(&c, &stream_s, &stream_n) || !take(&c, ',') ||
        !take_string(&c, &s, &n) || n != 4 || memcmp(s, "data", 4) != 0 || !take(&c, ':') ||
        !take(&c, '{'))
        goto fallback;
    /* The stream's kind (after its first '@') must start with "depth". */
    const char *at = memchr(stream_s, '@', stream_n);
    if (at == NULL || stream_s + stream_n - (at + 1) < 5 || memcmp(at + 1, "depth", 5) != 0)
        goto fallback;
    do {
        if (!take_string(&c, &s, &n) || n != 1 || !take(&c, ':'))
            goto fallback;
        int bit;
        switch (s[0]) {
        case 'e': {
            const char *v;
            Py_ssize_t vn;
            bit = F_E;
            if (!take_string(&c, &v, &vn) || vn != 11 || memcmp(v, "depthUpdate", 11) != 0)
                goto fallback;
            break;
        }
        case 'E':
            bit = F_EVENT_TIME;
            if (!take_uint(&c, &event_time) || event_time > 9000000000000LL)
                goto fallback;
            break;
        case 's':
            bit = F_S;
            if (!take_string(&c, &sym_s, &sym_n) || sym_n == 0)
                goto fallback;
            break;
        case 'U':
            bit = F_FIRST;
            if (!take_uint(&c, &first))
                goto fallback;
            break;
        case 'u':
            bit = F_FINAL;
            if (!take_uint(&c, &final))
                goto fallback;
            break;
        case 'b':
            bit = F_B;
            if (bids != NULL || (bids = take_levels(&c)) == NULL)
                goto fallback;
            break;
        case 'a':
            bit = F_A;
            if (asks != NULL || (asks = take_levels(&c)) == NULL)
                goto fallback;
            break;
        default:
            goto fallback;
        }
        if (seen & bit)
            goto fallback;
        seen |= bit;
    } while (take(&c, ','));
    if (seen != F_ALL || first > final || !take(&c, '}') || !take(&c, '}'))
        goto fallback;
    skip_ws(&c);
    if (c.p != c.end)
        goto fallback;

    PyObject *symbol, *stream;
    if (symbol_of(sym_s, sym_n, &symbol, &stream) < 0)
        goto fallback;
    PyObject *exchange_ts = PyLong_FromLongLong(event_time * 1000000LL);
    PyObject *first_id = PyLong_FromLongLong(first);
    PyObject *final_id = PyLong_FromLongLong(final);
    PyObject *event = NULL;
    if (exchange_ts != NULL && first_id != NULL && final_id != NULL) {
        PyObject *values[D_FIELDS] = {
            [D_STREAM] = stream,
            [D_VERSION] = zero,
            [D_EXCHANGE_TS] = exchange_ts,
            [D_RECEIVE_TS] = receive_ts,
            [D_EXCHANGE] = exchange_name,
            [D_SYMBOL] = symbol,
            [D_FIRST] = first_id,
            [D_FINAL] = final_id,
            [D_BIDS] = bids,
            [D_ASKS] = asks,
            [D_TOP] = Py_None,
        };
        event = new_instance(depth_cls, depth_off, values, D_FIELDS);
    }
    Py_XDECREF(exchange_ts);
    Py_XDECREF(first_id);
    Py_XDECREF(final_id);
    if (event != NULL) {
        Py_DECREF(bids);
        Py_DECREF(asks);
        return event;
    }

fallback:
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    PyErr_Clear(); /* the slow path meets the same problem and reports it properly */
    Py_RETURN_NONE;
}

/* applied(diff, version, top): a copy of a depth event at ``version`` with ``top``. */
static PyObject *
applied(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || depth_cls == NULL || Py_TYPE(args[0]) != depth_cls) {
        PyErr_SetString(PyExc_TypeError, "applied(diff, version, top) of a depth event");
        return NULL;
    }
    PyObject *values[D_FIELDS];
    for (int i = 0; i < D_FIELDS; i++)
        values[i] = SLOT(args[0], depth_off[i]);
    values[D_VERSION] = args[1];
    values[D_TOP] = args[2];
    return new_instance(depth_cls, depth_off, values, D_FIELDS);
}

/* ---- the order book ------------------------------------------------------------------ */

/* One side's window: prices sorted ascending, strong references. */
typedef struct {
    PyObject **items;
    Py_ssize_t len;
    Py_ssize_t cap;
} Window;

typedef struct {
    PyObject_HEAD
    Py_ssize_t size;
    PyObject *bids; /* dict: price -> quantity */
    PyObject *asks;
    Window bid_window;
    Window ask_window;
    PyObject *bid_edge; /* NULL: no edge */
    PyObject *ask_edge;
} Book;

static void
window_clear(Window *w)
{
    for (Py_ssize_t i = 0; i < w->len; i++)
        Py_DECREF(w->items[i]);
    w->len = 0;
}

static int
window_reserve(Window *w, Py_ssize_t need)
{
    if (need <= w->cap)
        return 0;
    Py_ssize_t cap = w->cap ? w->cap : 16;
    while (cap < need)
        cap *= 2;
    PyObject **items = PyMem_Realloc(w->items, cap * sizeof(PyObject *));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->items = items;
    w->cap = cap;
    return 0;
}

/* Prices are compared as Python objects: a Decimal subclass could run Python code that
 * changes the very book being changed. Never memory unsafe: the change is refused. */
static int
changed_during_comparison(void)
{
    PyErr_SetString(PyExc_RuntimeError, "the order book changed during a price comparison");
    return -1;
}

/* bisect_left (right=0) or bisect_right (right=1); -1 on a comparison error. */
static Py_ssize_t
window_bisect(Window *w, PyObject *price, int right)
{
    Py_ssize_t lo = 0, hi = w->len;
    while (lo < hi) {
        if (hi > w->len)
            return changed_during_comparison();
        Py_ssize_t mid = (lo + hi) / 2;
        PyObject *item = w->items[mid];
        Py_INCREF(item);
        int lt = right ? PyObject_RichCompareBool(price, item, Py_LT)
                       : PyObject_RichCompareBool(item, price, Py_LT);
        Py_DECREF(item);
        if (lt < 0)
            return -1;
        if (right ? lt : !lt)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static int
window_insort(Window *w, PyObject *price)
{
    Py_ssize_t at = window_bisect(w, price, 1);
    if (at < 0 || window_reserve(w, w->len + 1) < 0)
        return -1;
    if (at > w->len) /* a comparison ran code that changed this book */
        return changed_during_comparison();
    memmove(&w->items[at + 1], &w->items[at], (w->len - at) * sizeof(PyObject *));
    Py_INCREF(price);
    w->items[at] = price;
    w->len++;
    return 0;
}

static int
window_remove(Window *w, PyObject *price)
{
    Py_ssize_t at = window_bisect(w, price, 0);
    if (at < 0)
        return -1;
    if (at >= w->len) /* cannot happen unless a comparison ran code that changed this book */
        return changed_during_comparison();
    Py_DECREF(w->items[at]);
    memmove(&w->items[at], &w->items[at + 1], (w->len - at - 1) * sizeof(PyObject *));
    w->len--;
    return 0;
}

/* Keep the first ``keep`` prices (from=0) or the last ``keep`` (from=1). */
static void
window_cut(Window *w, Py_ssize_t keep, int last)
{
    Py_ssize_t drop = w->len - keep;
    if (drop <= 0)
        return;
    if (last) {
        for (Py_ssize_t i = 0; i < drop; i++)
            Py_DECREF(w->items[i]);
        memmove(&w->items[0], &w->items[drop], keep * sizeof(PyObject *));
    }
    else {
        for (Py_ssize_t i = keep; i < w->len; i++)
            Py_DECREF(w->items[i]);
    }
    w->len = keep;
}

/* The window refilled from the side's dict: every price while it has at most 2 * size,
 * else the best size of them and their worst as the edge. */
static int
refill(Book *b, int bid_side)
{
    PyObject *levels = bid_side ? b->bids : b->asks;
    Window *w = bid_side ? &b->bid_window : &b->ask_window;
    PyObject **edge = bid_side ? &b->bid_edge : &b->ask_edge;
    PyObject *keys = PyDict_Keys(levels);
    if (keys == NULL || PyList_Sort(keys) < 0) {
        Py_XDECREF(keys);
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys), from = 0, count = n;
    window_clear(w);
    Py_CLEAR(*edge);
    if (n > 2 * b->size) {
        count = b->size;
        from = bid_side ? n - count : 0;
    }
    if (window_reserve(w, count) < 0) {
        Py_DECREF(keys);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *price = PyList_GET_ITEM(keys, from + i);
        Py_INCREF(price);
        w->items[i] = price;
    }
    w->len = count;
    if (count < n) {
        *edge = w->items[bid_side ? 0 : count - 1];
        Py_INCREF(*edge);
    }
    Py_DECREF(keys);
    return 0;
}

/* The price and quantity of a level: borrowed from ``item`` when it is a 2-tuple, else
 * from ``*held``, a tuple made of it (the caller releases it). */
static int
pair_of(PyObject *item, PyObject **price, PyObject **qty, PyObject **held)
{
    *held = NULL;
    if (!(PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2)) {
        item = *held = PySequence_Tuple(item);
        if (item == NULL)
            return -1;
        if (PyTuple_GET_SIZE(item) != 2) {
            if (PyTuple_GET_SIZE(item) < 2) /* Python's own words for ``price, qty = item`` */
                PyErr_Format(PyExc_ValueError,
                             "not enough values to unpack (expected 2, got %zd)",
                             PyTuple_GET_SIZE(item));
            else
                PyErr_SetString(PyExc_ValueError, "too many values to unpack (expected 2)");
            Py_CLEAR(*held);
            return -1;
        }
    }
    *price = PyTuple_GET_ITEM(item, 0);
    *qty = PyTuple_GET_ITEM(item, 1);
    return 0;
}

/* Set one level: a quantity of zero removes it; the window follows (new prices at or better
 * than the edge enter it, removed ones leave it). */
static int
apply_level(PyObject *levels, Window *w, PyObject *edge, int better, PyObject *price,
            PyObject *qty)
{
    int nonzero = PyObject_IsTrue(qty);
    if (nonzero < 0)
        return -1;
    int present = PyDict_Contains(levels, price);
    if (present < 0)
        return -1;
    if (nonzero) {
        if (!present) {
            int in_window = edge == NULL ? 1 : PyObject_RichCompareBool(price, edge, better);
            if (in_window < 0 || (in_window && window_insort(w, price) < 0))
                return -1;
        }
        return PyDict_SetItem(levels, price, qty);
    }
    if (present) {
        int in_window = edge == NULL ? 1 : PyObject_RichCompareBool(price, edge, better);
        if (in_window < 0 || PyDict_DelItem(levels, price) < 0 ||
            (in_window && window_remove(w, price) < 0))
            return -1;
    }
    return 0;
}

/* Set each level of one side; a quantity of zero removes the level. */
static int
apply_side(Book *b, PyObject *side, int bid_side)
{
    PyObject *levels = bid_side ? b->bids : b->asks;
    Window *w = bid_side ? &b->bid_window : &b->ask_window;
    PyObject *edge = bid_side ? b->bid_edge : b->ask_edge;
    int better = bid_side ? Py_GE : Py_LE; /* at or better than the edge: in the window */
    PyObject *seq = PySequence_Fast(side, "levels must be a sequence of (price, quantity)");
    if (seq == NULL)
        return -1;
    Py_XINCREF(edge); /* held: comparisons may run code (see changed_during_comparison) */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i), *price, *qty, *held;
        Py_INCREF(item);
        int ok = pair_of(item, &price, &qty, &held);
        if (ok == 0) {
            ok = apply_level(levels, w, edge, better, price, qty);
            Py_XDECREF(held);
        }
        Py_DECREF(item);
        if (ok < 0) {
            Py_XDECREF(edge);
            goto error;
        }
    }
    Py_XDECREF(edge);
    Py_DECREF(seq);
    if (w->len > 2 * b->size) {
        window_cut(w, b->size, bid_side);
        PyObject *new_edge = w->items[bid_side ? 0 : w->len - 1];
        Py_INCREF(new_edge);
        if (bid_side)
            Py_XSETREF(b->bid_edge, new_edge);
        else
            Py_XSETREF(b->ask_edge, new_edge);
    }
    else if (w->len == 0 && PyDict_GET_SIZE(levels) > 0)
        return refill(b, bid_side);
    return 0;
error:
    Py_DECREF(seq);
    return -1;
}

static PyObject *
Book_apply(Book *b, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply(bids, asks)");
        return NULL;
    }
    if (apply_side(b, args[0], 1) < 0 || apply_side(b, args[1], 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static void
Book_do_clear(Book *b)
{
    PyDict_Clear(b->bids);
    PyDict_Clear(b->asks);
    window_clear(&b->bid_window);
    window_clear(&b->ask_window);
    Py_CLEAR(b->bid_edge);
    Py_CLEAR(b->ask_edge);
}

static PyObject *
Book_clear(Book *b, PyObject *unused)
{
    Book_do_clear(b);
    Py_RETURN_NONE;
}

static int
load_side(PyObject *levels, PyObject *side)
{
    PyObject *it = PyObject_GetIter(side);
    if (it == NULL)
        return -1;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *price, *qty, *held;
        int ok = pair_of(item, &price, &qty, &held);
        if (ok == 0) {
            int nonzero = PyObject_IsTrue(qty);
            ok = nonzero < 0 ? -1 : nonzero ? PyDict_SetItem(levels, price, qty) : 0;
            Py_XDECREF(held);
        }
        Py_DECREF(item);
        if (ok < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *
Book_load(Book *b, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "load(bids, asks)");
        return NULL;
    }
    Book_do_clear(b);
    if (load_side(b->bids, args[0]) < 0 || load_side(b->asks, args[1]) < 0 ||
        refill(b, 1) < 0 || refill(b, 0) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
best_of(Book *b, int bid_side)
{
    Window *w = bid_side ? &b->bid_window : &b->ask_window;
    if (w->len == 0)
        Py_RETURN_NONE;
    PyObject *price = w->items[bid_side ? w->len - 1 : 0], *out = NULL;
    Py_INCREF(price);
    PyObject *qty = PyDict_GetItemWithError(bid_side ? b->bids : b->asks, price);
    if (qty != NULL)
        out = PyTuple_Pack(2, price, qty);
    else if (!PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "order book window lost a price");
    Py_DECREF(price);
    return out;
}

static PyObject *
Book_best_bid(Book *b, PyObject *unused)
{
    return best_of(b, 1);
}

static PyObject *
Book_best_ask(Book *b, PyObject *unused)
{
    return best_of(b, 0);
}

static PyObject *
Book_top(Book *b, PyObject *unused)
{
    if (b->bid_window.len == 0 || b->ask_window.len == 0)
        Py_RETURN_NONE;
    PyObject *bid = b->bid_window.items[b->bid_window.len - 1];
    PyObject *ask = b->ask_window.items[0];
    PyObject *bid_qty, *ask_qty, *top = NULL;
    Py_INCREF(bid);
    Py_INCREF(ask);
    bid_qty = PyDict_GetItemWithError(b->bids, bid);
    Py_XINCREF(bid_qty);
    ask_qty = bid_qty ? PyDict_GetItemWithError(b->asks, ask) : NULL;
    Py_XINCREF(ask_qty);
    if (ask_qty != NULL)
        top = new_top(bid, bid_qty, ask, ask_qty);
    else if (!PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "order book window lost a price");
    Py_DECREF(bid);
    Py_DECREF(ask);
    Py_XDECREF(bid_qty);
    Py_XDECREF(ask_qty);
    return top;
}

static PyObject *
Book_is_crossed(Book *b, PyObject *unused)
{
    if (b->bid_window.len == 0 || b->ask_window.len == 0)
        Py_RETURN_FALSE;
    PyObject *bid = b->bid_window.items[b->bid_window.len - 1], *ask = b->ask_window.items[0];
    Py_INCREF(bid);
    Py_INCREF(ask);
    int crossed = PyObject_RichCompareBool(bid, ask, Py_GE);
    Py_DECREF(bid);
    Py_DECREF(ask);
    if (crossed < 0)
        return NULL;
    return PyBool_FromLong(crossed);
}

static PyObject *
sorted_levels(PyObject *levels, int reverse)
{
    PyObject *keys = PyDict_Keys(levels);
    if (keys == NULL || PyList_Sort(keys) < 0 || (reverse && PyList_Reverse(keys) < 0)) {
        Py_XDECREF(keys);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(keys);
    PyObject *out = PyTuple_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *price = PyList_GET_ITEM(keys, i);
        PyObject *qty = PyDict_GetItemWithError(levels, price);
        PyObject *pair = qty == NULL ? NULL : PyTuple_Pack(2, price, qty);
        if (pair == NULL) {
            if (!PyErr_Occurred())
                changed_during_comparison();
            Py_CLEAR(out);
        }
        else
            PyTuple_SET_ITEM(out, i, pair);
    }
    Py_DECREF(keys);
    return out;
}

static PyObject *
Book_levels(Book *b, PyObject *unused)
{
    PyObject *bids = sorted_levels(b->bids, 1);
    PyObject *asks = bids ? sorted_levels(b->asks, 0) : NULL;
    if (asks == NULL) {
        Py_XDECREF(bids);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, bids, asks);
    Py_DECREF(bids);
    Py_DECREF(asks);
    return out;
}

static Py_ssize_t
Book_len(Book *b)
{
    return PyDict_GET_SIZE(b->bids) + PyDict_GET_SIZE(b->asks);
}

static int
Book_init(Book *b, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"window", NULL};
    Py_ssize_t window = 48;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n", names, &window))
        return -1;
    if (window < 1) {
        PyErr_Format(PyExc_ValueError, "window must be at least 1, got %zd", window);
        return -1;
    }
    b->size = window;
    if (b->bids == NULL && (b->bids = PyDict_New()) == NULL)
        return -1;
    if (b->asks == NULL && (b->asks = PyDict_New()) == NULL)
        return -1;
    Book_do_clear(b);
    return 0;
}

static int
Book_traverse(Book *b, visitproc visit, void *arg)
{
    Py_VISIT(b->bids);
    Py_VISIT(b->asks);
    Py_VISIT(b->bid_edge);
    Py_VISIT(b->ask_edge);
    for (Py_ssize_t i = 0; i < b->bid_window.len; i++)
        Py_VISIT(b->bid_window.items[i]);
    for (Py_ssize_t i = 0; i < b->ask_window.len; i++)
        Py_VISIT(b->ask_window.items[i]);
    return 0;
}

static int
Book_tp_clear(Book *b)
{
    window_clear(&b->bid_window);
    window_clear(&b->ask_window);
    Py_CLEAR(b->bids);
    Py_CLEAR(b->asks);
    Py_CLEAR(b->bid_edge);
    Py_CLEAR(b->ask_edge);
    return 0;
}

static void
Book_dealloc(Book *b)
{
    PyObject_GC_UnTrack(b);
    Book_tp_clear(b);
    PyMem_Free(b->bid_window.items);
    PyMem_Free(b->ask_window.items);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static PyMethodDef Book_methods[] = {
    {"apply", (PyCFunction)(void (*)(void))Book_apply, METH_FASTCALL,
     "Set each level's quantity; a quantity of zero removes the level."},
    {"load", (PyCFunction)(void (*)(void))Book_load, METH_FASTCALL,
     "Replace the whole book by a snapshot's levels."},
    {"clear", (PyCFunction)Book_clear, METH_NOARGS, "Remove every level."},
    {"top", (PyCFunction)Book_top, METH_NOARGS,
     "Return best bid and ask, or None while either side is empty."},
    {"best_bid", (PyCFunction)Book_best_bid, METH_NOARGS, "Return the highest bid level."},
    {"best_ask", (PyCFunction)Book_best_ask, METH_NOARGS, "Return the lowest ask level."},
    {"is_crossed", (PyCFunction)Book_is_crossed, METH_NOARGS,
     "Return whether the best bid is at or above the best ask."},
    {"levels", (PyCFunction)Book_levels, METH_NOARGS,
     "Return (bids best first, asks best first): every level, sorted."},
    {NULL}};

static PySequenceMethods Book_as_sequence = {.sq_length = (lenfunc)Book_len};

static PyTypeObject BookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "algotrade.adapters._speedups.Book",
    .tp_doc = "Price levels of one symbol: algotrade.domain.book.OrderBook, compiled.",
    .tp_basicsize = sizeof(Book),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Book_init,
    .tp_dealloc = (destructor)Book_dealloc,
    .tp_traverse = (traverseproc)Book_traverse,
    .tp_clear = (inquiry)Book_tp_clear,
    .tp_methods = Book_methods,
    .tp_as_sequence = &Book_as_sequence,
};

/* ---- the module ---------------------------------------------------------------------- */

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(depth_cls, depth_slots, top_cls, top_slots, decimal_of, exchange)"},
    {"scan_depth", (PyCFunction)(void (*)(void))scan_depth, METH_FASTCALL,
     "scan_depth(frame, receive_ts) -> DepthDiffReceived | None"},
    {"applied", (PyCFunction)(void (*)(void))applied, METH_FASTCALL,
     "applied(diff, version, top) -> DepthDiffReceived"},
    {"forget", forget, METH_NOARGS, "Empty the decimals cached by their text."},
    {"scan_klines", (PyCFunction)(void (*)(void))scan_klines, METH_FASTCALL,
     "scan_klines(data, start) -> columns of kline rows | None (_history.c)"},
    {"sma_crossover", (PyCFunction)(void (*)(void))sma_crossover, METH_FASTCALL,
     "sma_crossover(closes, short, long, equal_within) -> [(index, side, short, long)]"},
    {"curve", (PyCFunction)(void (*)(void))curve, METH_FASTCALL,
     "curve(closes, close_times, changes, initial) -> (equity, varying)"},
    {"curve_figures", (PyCFunction)(void (*)(void))curve_figures, METH_FASTCALL,
     "curve_figures(varying, initial) -> (max_drawdown, sum, sum of squares, lowest)"},
    {NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "The hot paths compiled: depth frames into events, the order book, kline rows into columns and the SMA crossover (_history.c).", -1,
    module_methods};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&BookType) < 0)
        return NULL;
    entries = PyMem_Calloc(TABLE_MAX, sizeof(Entry));
    if (entries == NULL || table_grow() < 0)
        return PyErr_NoMemory();
    zero = PyLong_FromLong(0);
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&BookType);
    if (PyModule_AddObject(m, "Book", (PyObject *)&BookType) < 0) {
        Py_DECREF(&BookType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
