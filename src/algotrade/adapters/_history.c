/* History's hot path, compiled into _speedups: kline CSV text into columns, and the SMA
 * crossover's decisions over a column of closes.
 *
 * scan_klines(data, start) reads Binance kline rows (data.binance.vision's files, the
 * REST layout) from byte `start` of `data` into columns, or answers None for anything it
 * does not read exactly as algotrade.adapters.candles does: then the caller reads the file
 * the Python way, which also reports what is wrong. It takes only the plain form: no
 * quotes, no white space but a line's CR, integer timestamps, prices as digits with at
 * most one point (at most 18 digits), every row valid, of one interval, each after the
 * one before. Prices are kept exact, as a coefficient and a number of decimals; the close
 * is also parsed as a double by strtod, correctly rounded, as float(Decimal(text)) is.
 *
 * sma_crossover(closes, short, long) runs SimpleMovingAverage (a running sum, recomputed
 * with fsum every `period` updates) and SmaCrossover.on_bar over the closes, with the same
 * floating-point operations in the same order, and returns the decisions: (index, side,
 * short average, long average), side 1 for BUY and -1 for SELL. fsum is CPython's
 * math.fsum algorithm (Shewchuk's partials, then its half-even correction).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_history.h"

#define MICROS_FROM 100000000000000LL /* 10**14: a millisecond stamp this large is year 5138 */
#define MAX_DIGITS 18
#define EXACT_INTEGER 9007199254740992LL /* 2**53: every integer up to it is a double */

static const double POWERS[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                  1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

typedef struct {
    int64_t *open_ns, *end_ns, *trades, *coef[4];
    int8_t *scale[4];
    double *close;
    Py_ssize_t n, cap;
} Columns;

/* The raw allocator: columns grow while the GIL is released. */
static void columns_free(Columns *c) {
    PyMem_RawFree(c->open_ns);
    PyMem_RawFree(c->end_ns);
    PyMem_RawFree(c->trades);
    PyMem_RawFree(c->close);
    for (int i = 0; i < 4; i++) {
        PyMem_RawFree(c->coef[i]);
        PyMem_RawFree(c->scale[i]);
    }
}

static int grow(void **p, Py_ssize_t cap, size_t size) {
    void *q = PyMem_RawRealloc(*p, (size_t)cap * size);
    if (q == NULL) return -1;
    *p = q;
    return 0;
}

static int columns_reserve(Columns *c, Py_ssize_t want) {
    if (want <= c->cap) return 0;
    Py_ssize_t cap = c->cap ? c->cap * 2 : 4096;
    while (cap < want) cap *= 2;
    if (grow((void **)&c->open_ns, cap, 8) || grow((void **)&c->end_ns, cap, 8) ||
        grow((void **)&c->trades, cap, 8) || grow((void **)&c->close, cap, 8))
        return -1;
    for (int i = 0; i < 4; i++)
        if (grow((void **)&c->coef[i], cap, 8) || grow((void **)&c->scale[i], cap, 1)) return -1;
    c->cap = cap;
    return 0;
}

/* A non-negative integer field ending at ',' or the line's end. */
static int read_int(const char **p, const char *end, int64_t *out) {
    const char *s = *p;
    int64_t v = 0;
    int digits = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        if (digits >= 18) return -1;
        v = v * 10 + (*s - '0');
        s++;
        digits++;
    }
    if (digits == 0) return -1;
    *out = v;
    *p = s;
    return 0;
}

/* A positive decimal: digits, optionally '.' and digits; coefficient and decimals. */
static int read_price(const char **p, const char *end, int64_t *coef, int8_t *scale) {
    const char *s = *p;
    int64_t v = 0;
    int digits = 0, decimals = 0, point = 0;
    for (; s < end; s++) {
        char ch = *s;
        if (ch >= '0' && ch <= '9') {
            if (digits >= MAX_DIGITS) return -1;
            v = v * 10 + (ch - '0');
            if (v) digits++; /* leading zeros do not count against the limit */
            if (point) decimals++;
        } else if (ch == '.' && !point) {
            point = 1;
        } else {
            break;
        }
    }
    if (s == *p || (point && decimals == 0) || (s - *p == 1 && point)) return -1;
    if (point && s[-1] == '.') return -1;
    if (v <= 0) return -1; /* a positive price */
    *coef = v;
    *scale = (int8_t)decimals;
    *p = s;
    return 0;
}

/* Compare a/10^sa with b/10^sb exactly: -1, 0 or 1. */
static int compare_decimal(int64_t a, int sa, int64_t b, int sb) {
    __int128 x = a, y = b;
    while (sa < sb) { x *= 10; sa++; }
    while (sb < sa) { y *= 10; sb++; }
    return (x > y) - (x < y);
}

static int skip_field(const char **p, const char *end) {
    const char *s = *p;
    while (s < end && *s != ',') {
        char ch = *s;
        if (ch == ' ' || ch == '\t' || ch == '"') return -1; /* the Python reader strips */
        s++;
    }
    *p = s;
    return 0;
}

static int comma(const char **p, const char *end) {
    if (*p >= end || **p != ',') return -1;
    (*p)++;
    return 0;
}

static int64_t to_ns(int64_t stamp) { return stamp * (stamp >= MICROS_FROM ? 1000 : 1000000); }

/* One row [s, end) into row n of c; 0, or -1 when it is not one the fast path reads. */
static int read_row(const char *s, const char *end, Columns *c, Py_ssize_t n, int64_t *span,
                    int64_t last_open) {
    int64_t open_stamp, close_stamp, t;
    int64_t coef[4];
    int8_t scale[4];
    if (read_int(&s, end, &open_stamp) || comma(&s, end)) return -1;
    for (int i = 0; i < 4; i++) {
        if (read_price(&s, end, &coef[i], &scale[i]) || comma(&s, end)) return -1;
    }
    if (skip_field(&s, end) || comma(&s, end)) return -1; /* volume */
    if (read_int(&s, end, &close_stamp)) return -1;
    int64_t trades = 0;
    int fields = 7;
    if (s < end) {
        if (comma(&s, end) || skip_field(&s, end)) return -1; /* quote volume */
        fields++;
        if (s < end) {
            if (comma(&s, end) || read_int(&s, end, &t)) return -1;
            trades = t;
            fields++;
            while (s < end) /* the rest: taker volumes, ignore */
                if (comma(&s, end) || skip_field(&s, end)) return -1;
        }
    }
    (void)fields;
    int64_t open_ns = to_ns(open_stamp);
    int64_t close_ns = to_ns(close_stamp);
    int64_t row_span = close_ns - open_ns + (close_stamp >= MICROS_FROM ? 1000 : 1000000);
    if (row_span <= 0 || row_span % 1000000000LL) return -1;
    if (*span == 0) *span = row_span;
    else if (row_span != *span) return -1;
    if (open_ns <= last_open) return -1;
    /* low <= open <= high and low <= close <= high */
    if (compare_decimal(coef[0], scale[0], coef[1], scale[1]) > 0 ||
        compare_decimal(coef[2], scale[2], coef[0], scale[0]) > 0 ||
        compare_decimal(coef[2], scale[2], coef[3], scale[3]) > 0 ||
        compare_decimal(coef[3], scale[3], coef[1], scale[1]) > 0)
        return -1;
    c->open_ns[n] = open_ns;
    c->end_ns[n] = open_ns + row_span;
    c->trades[n] = trades;
    for (int i = 0; i < 4; i++) {
        c->coef[i][n] = coef[i];
        c->scale[i][n] = scale[i];
    }
    return 0;
}

static PyObject *bytes_of(const void *p, Py_ssize_t n, size_t size) {
    return PyBytes_FromStringAndSize((const char *)p, n * (Py_ssize_t)size);
}

/* One stretch of whole lines [s, stop) into its own columns. */
typedef struct {
    const char *s, *stop;
    Columns c;
    int64_t span;
    int ok; /* 1: read, 0: not for the fast path, -2: out of memory */
} Range;

static void *scan_range(void *arg) {
    Range *r = arg;
    const char *s = r->s, *stop = r->stop;
    Columns *c = &r->c;
    int64_t last_open = -1;
    char number[64];
    r->ok = 1;
    while (s < stop) {
        const char *line_end = memchr(s, '\n', (size_t)(stop - s));
        const char *next = line_end ? line_end + 1 : stop;
        if (!line_end) line_end = stop;
        const char *e = line_end;
        if (e > s && e[-1] == '\r') e--;
        if (e == s) { /* an empty line: the Python reader skips it */
            s = next;
            continue;
        }
        if (columns_reserve(c, c->n + 1)) {
            r->ok = -2;
            return NULL;
        }
        if (read_row(s, e, c, c->n, &r->span, last_open)) {
            r->ok = 0;
            return NULL;
        }
        /* The close as a double, correctly rounded as float(Decimal(text)) is: a quotient
         * of two doubles that hold the coefficient and the power of ten exactly is
         * correctly rounded (IEEE 754); otherwise its text through strtod. */
        int64_t coef = c->coef[3][c->n];
        int sc = c->scale[3][c->n];
        if (coef <= EXACT_INTEGER && sc <= 22) {
            c->close[c->n] = (double)coef / POWERS[sc];
        } else {
            int len = snprintf(number, sizeof number, "%lldE-%d", (long long)coef, sc);
            if (len <= 0 || len >= (int)sizeof number) {
                r->ok = 0;
                return NULL;
            }
            c->close[c->n] = strtod(number, NULL);
        }
        last_open = c->open_ns[c->n];
        c->n++;
        s = next;
    }
    return NULL;
}

#define MAX_THREADS 8
#define MIN_RANGE (4 << 20) /* bytes a thread reads at least: below, it costs more than it saves */

/* One column of every range, joined into one bytes object. */
static PyObject *joined(Range *ranges, int count, Py_ssize_t total, size_t offset, size_t size) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, total * (Py_ssize_t)size);
    if (out == NULL) return NULL;
    char *into = PyBytes_AS_STRING(out);
    for (int i = 0; i < count; i++) {
        char *column = *(char **)((char *)&ranges[i].c + offset);
        size_t bytes = (size_t)ranges[i].c.n * size;
        if (bytes) memcpy(into, column, bytes);
        into += bytes;
    }
    return out;
}

PyObject *scan_klines(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "scan_klines(data, start, threads[, min_range])");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    long threads = PyLong_AsLong(args[2]);
    Py_ssize_t min_range = nargs == 4 ? PyLong_AsSsize_t(args[3]) : MIN_RANGE;
    if (PyErr_Occurred()) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const char *data = (const char *)view.buf;
    const char *stop = data + view.len;
    const char *s = data + (start < 0 ? 0 : (start > view.len ? view.len : start));
    int count = (int)(threads < 1 ? 1 : (threads > MAX_THREADS ? MAX_THREADS : threads));
    while (count > 1 && (stop - s) / count < min_range) count--;
    Range ranges[MAX_THREADS];
    memset(ranges, 0, sizeof ranges);
    /* cut at line ends: each range holds whole lines */
    const char *from = s;
    for (int i = 0; i < count; i++) {
        const char *to = stop;
        if (i < count - 1) {
            to = from + (stop - from) / (count - i);
            const char *end = memchr(to, '\n', (size_t)(stop - to));
            to = end ? end + 1 : stop;
        }
        ranges[i].s = from;
        ranges[i].stop = to;
        from = to;
    }
    pthread_t workers[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    Py_BEGIN_ALLOW_THREADS
    for (int i = 1; i < count; i++)
        started[i] = pthread_create(&workers[i], NULL, scan_range, &ranges[i]) == 0;
    scan_range(&ranges[0]);
    for (int i = 1; i < count; i++) {
        if (started[i]) pthread_join(workers[i], NULL);
        else scan_range(&ranges[i]); /* no thread: here */
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    int ok = 1;
    Py_ssize_t total = 0;
    int64_t span = 0, last_open = -1;
    for (int i = 0; i < count; i++) {
        Range *r = &ranges[i];
        if (r->ok != 1) {
            ok = r->ok;
            break;
        }
        if (r->c.n == 0) continue;
        if ((span && r->span != span) || r->c.open_ns[0] <= last_open) {
            ok = 0;
            break;
        }
        span = r->span;
        last_open = r->c.open_ns[r->c.n - 1];
        total += r->c.n;
    }
    PyObject *out = NULL;
    if (ok == -2) {
        PyErr_NoMemory();
    } else if (ok == 0 || total == 0) {
        out = Py_None;
        Py_INCREF(out);
    } else {
        out = Py_BuildValue(
            "(LNNNNNNNNNNNN)", (long long)span,
            joined(ranges, count, total, offsetof(Columns, open_ns), 8),
            joined(ranges, count, total, offsetof(Columns, end_ns), 8),
            joined(ranges, count, total, offsetof(Columns, trades), 8),
            joined(ranges, count, total, offsetof(Columns, coef[0]), 8),
            joined(ranges, count, total, offsetof(Columns, coef[1]), 8),
            joined(ranges, count, total, offsetof(Columns, coef[2]), 8),
            joined(ranges, count, total, offsetof(Columns, coef[3]), 8),
            joined(ranges, count, total, offsetof(Columns, scale[0]), 1),
            joined(ranges, count, total, offsetof(Columns, scale[1]), 1),
            joined(ranges, count, total, offsetof(Columns, scale[2]), 1),
            joined(ranges, count, total, offsetof(Columns, scale[3]), 1),
            joined(ranges, count, total, offsetof(Columns, close), 8));
    }
    for (int i = 0; i < count; i++) columns_free(&ranges[i].c);
    return out;
}

/* CPython's math.fsum, for finite values: exact partials, one rounding at the end. */
static double fsum(const double *values, Py_ssize_t count, double *partials) {
    Py_ssize_t n = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        double x = values[k], y, t, hi, lo, yr;
        Py_ssize_t i = 0;
        for (Py_ssize_t j = 0; j < n; j++) {
            y = partials[j];
            if (fabs(x) < fabs(y)) {
                t = x;
                x = y;
                y = t;
            }
            hi = x + y;
            yr = hi - x;
            lo = y - yr;
            if (lo != 0.0) partials[i++] = lo;
            x = hi;
        }
        n = i;
        partials[n++] = x;
    }
    double hi = 0.0, lo = 0.0, x, y, yr;
    if (n > 0) {
        hi = partials[--n];
        while (n > 0) {
            x = hi;
            y = partials[--n];
            hi = x + y;
            yr = hi - x;
            lo = y - yr;
            if (lo != 0.0) break;
        }
        if (n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0))) {
            y = lo * 2.0;
            x = hi + y;
            yr = x - hi;
            if (y == yr) hi = x;
        }
    }
    return hi;
}

typedef struct {
    Py_ssize_t period, filled, head, since;
    double sum;
    double *window; /* a ring of `period` values, oldest at head once full */
    double *ordered; /* the window from oldest to newest, for fsum */
} Average;

static int average_init(Average *a, Py_ssize_t period) {
    memset(a, 0, sizeof *a);
    a->period = period;
    a->window = PyMem_Malloc((size_t)period * sizeof(double));
    a->ordered = PyMem_Malloc((size_t)(period + 1) * sizeof(double));
    return (a->window && a->ordered) ? 0 : -1;
}

static void average_free(Average *a) {
    PyMem_Free(a->window);
    PyMem_Free(a->ordered);
}

static double window_fsum(Average *a, double *partials) {
    Py_ssize_t p = a->period;
    for (Py_ssize_t k = 0; k < p; k++) a->ordered[k] = a->window[(a->head + k) % p];
    return fsum(a->ordered, p, partials);
}

/* SimpleMovingAverage.update: 1 and the average in *out once defined, else 0. */
static int average_update(Average *a, double value, double *out, double *partials) {
    Py_ssize_t p = a->period;
    if (a->filled == p) {
        double leaving = a->window[a->head];
        a->window[a->head] = value;
        a->head = (a->head + 1) % p;
        Py_ssize_t since = a->since + 1;
        if (since < p) {
            a->since = since;
            a->sum = a->sum + value - leaving;
        } else {
            a->since = 0;
            a->sum = window_fsum(a, partials);
        }
        *out = a->sum / (double)p;
        return 1;
    }
    a->window[a->filled++] = value;
    a->sum += value;
    if (a->filled < p) return 0;
    a->since = 0;
    a->head = 0;
    a->sum = window_fsum(a, partials);
    *out = a->sum / (double)p;
    return 1;
}

PyObject *sma_crossover(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "sma_crossover(closes, short, long, equal_within)");
        return NULL;
    }
    Py_ssize_t short_period = PyLong_AsSsize_t(args[1]);
    Py_ssize_t long_period = PyLong_AsSsize_t(args[2]);
    double equal_within = PyFloat_AsDouble(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (short_period < 1 || long_period < 1) {
        PyErr_SetString(PyExc_ValueError, "periods must be positive");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (view.len % (Py_ssize_t)sizeof(double)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "closes: a buffer of doubles");
        return NULL;
    }
    const double *closes = (const double *)view.buf;
    Py_ssize_t count = view.len / (Py_ssize_t)sizeof(double);
    Average s, l;
    Py_ssize_t most = short_period > long_period ? short_period : long_period;
    double *partials = PyMem_Malloc((size_t)(most + 2) * sizeof(double));
    PyObject *out = PyList_New(0);
    int failed = average_init(&s, short_period) | average_init(&l, long_period);
    if (failed || partials == NULL || out == NULL) {
        average_free(&s);
        average_free(&l);
        PyMem_Free(partials);
        Py_XDECREF(out);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    int sign = 0;
    for (Py_ssize_t k = 0; k < count; k++) {
        double close = closes[k], shorter = 0.0, longer = 0.0;
        int has_short = average_update(&s, close, &shorter, partials);
        int has_long = average_update(&l, close, &longer, partials);
        if (!has_short || !has_long) continue;
        double margin = longer * equal_within;
        int side = 0;
        if (shorter > longer + margin) {
            if (sign > 0) continue;
            side = sign == 0 ? 0 : 1;
            sign = 1;
        } else if (shorter < longer - margin) {
            if (sign < 0) continue;
            side = sign == 0 ? 0 : -1;
            sign = -1;
        } else {
            continue;
        }
        if (side == 0) continue;
        PyObject *item = Py_BuildValue("(nidd)", k, side, shorter, longer);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(item);
    }
    average_free(&s);
    average_free(&l);
    PyMem_Free(partials);
    PyBuffer_Release(&view);
    return out;
}

/* curve(closes, close_times, changes, initial_cash) -> (equity, varying): Backtester._curve
 * over columns. `changes` is a list of (close time, cash, quantity) in time order; from
 * the first bar whose close time is at or after a change's time, the equity is
 * cash + quantity * close (the same double operations as _marked). `varying` is the same
 * curve with each flat stretch (no quantity held) shortened to its first value. Both are
 * bytes of doubles. */
PyObject *curve(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "curve(closes, close_times, changes: list, initial)");
        return NULL;
    }
    double initial = PyFloat_AsDouble(args[3]);
    if (initial == -1.0 && PyErr_Occurred()) return NULL;
    Py_buffer cv, tv;
    if (PyObject_GetBuffer(args[0], &cv, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &tv, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&cv);
        return NULL;
    }
    Py_ssize_t n = cv.len / (Py_ssize_t)sizeof(double);
    if (tv.len / (Py_ssize_t)sizeof(int64_t) != n) {
        PyBuffer_Release(&cv);
        PyBuffer_Release(&tv);
        PyErr_SetString(PyExc_ValueError, "closes and close times differ in length");
        return NULL;
    }
    const double *closes = cv.buf;
    const int64_t *times = tv.buf;
    PyObject *changes = args[2];
    Py_ssize_t m = PyList_GET_SIZE(changes);
    double *equity = PyMem_RawMalloc((size_t)(n ? n : 1) * sizeof(double));
    double *varying = PyMem_RawMalloc((size_t)(n ? n : 1) * sizeof(double));
    PyObject *out = NULL;
    if (equity == NULL || varying == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double cash = initial, quantity = 0.0;
    Py_ssize_t start = 0, kept = 0;
    for (Py_ssize_t c = 0; c <= m; c++) {
        Py_ssize_t stop = n;
        double next_cash = 0.0, next_quantity = 0.0;
        if (c < m) {
            PyObject *item = PyList_GET_ITEM(changes, c);
            long long at;
            if (!PyArg_ParseTuple(item, "Ldd", &at, &next_cash, &next_quantity)) goto done;
            /* bisect_left(times, at, start) */
            Py_ssize_t lo = start, hi = n;
            while (lo < hi) {
                Py_ssize_t mid = lo + (hi - lo) / 2;
                if (times[mid] < at) lo = mid + 1;
                else hi = mid;
            }
            stop = lo;
        }
        if (quantity != 0.0) {
            for (Py_ssize_t k = start; k < stop; k++) {
                double value = cash + quantity * closes[k];
                equity[k] = value;
                varying[kept++] = value;
            }
        } else {
            for (Py_ssize_t k = start; k < stop; k++) equity[k] = cash;
            if (stop > start) varying[kept++] = cash;
        }
        if (c < m) {
            cash = next_cash;
            quantity = next_quantity;
            start = stop;
        }
    }
    out = Py_BuildValue("(NN)", bytes_of(equity, n, sizeof(double)),
                        bytes_of(varying, kept, sizeof(double)));
done:
    PyMem_RawFree(equity);
    PyMem_RawFree(varying);
    PyBuffer_Release(&cv);
    PyBuffer_Release(&tv);
    return out;
}

/* curve_figures(varying, initial) -> (max_drawdown, fsum of returns, fsum of squared
 * returns, smallest value): what max_drawdown and sharpe_ratio compute, with the same
 * operations per value (each return b / a - 1.0, the first equity / initial - 1.0; fsum
 * is exact, so the order of the values does not change it). */
PyObject *curve_figures(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "curve_figures(varying, initial)");
        return NULL;
    }
    double initial = PyFloat_AsDouble(args[1]);
    if (initial == -1.0 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const double *v = view.buf;
    Py_ssize_t n = view.len / (Py_ssize_t)sizeof(double);
    double peak = -INFINITY, worst = 0.0, lowest = INFINITY;
    for (Py_ssize_t k = 0; k < n; k++) {
        double value = v[k];
        if (value < lowest) lowest = value;
        if (value > peak) {
            peak = value;
        } else if (peak > 0) {
            double drop = (peak - value) / peak;
            if (drop > worst) worst = drop;
        }
    }
    double *returns = PyMem_RawMalloc((size_t)(n + 1) * sizeof(double));
    double *squares = PyMem_RawMalloc((size_t)(n + 1) * sizeof(double));
    double *partials = PyMem_RawMalloc((size_t)(n + 2) * sizeof(double));
    PyObject *out = NULL;
    if (returns == NULL || squares == NULL || partials == NULL) {
        PyErr_NoMemory();
    } else {
        Py_ssize_t r = 0;
        if (n > 0 && initial > 0 && lowest > 0) {
            for (Py_ssize_t k = 0; k + 1 < n; k++) returns[r++] = v[k + 1] / v[k] - 1.0;
            returns[r++] = v[0] / initial - 1.0;
        }
        for (Py_ssize_t k = 0; k < r; k++) squares[k] = returns[k] * returns[k];
        double total = fsum(returns, r, partials);
        double total_squares = fsum(squares, r, partials);
        out = Py_BuildValue("(dddd)", worst, total, total_squares, n ? lowest : 0.0);
    }
    PyMem_RawFree(returns);
    PyMem_RawFree(squares);
    PyMem_RawFree(partials);
    PyBuffer_Release(&view);
    return out;
}
