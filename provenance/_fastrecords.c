/* Compiled check of canonical records: the edge's sealer and the coordinator's ingest both
 * accept a run of records only if every one is the exact RFC 8785 form of a valid record
 * (provenance/records.py, CANONICAL_RECORD_PATTERN, plus "manifest set => creator and
 * content_id set"). Python's regular expressions did this at ~6 ns per byte, half of sealing's
 * CPU; this walks the same grammar once, left to right, at about 1 ns per byte.
 *
 * It is an accelerator, never the reference: provenance/fastrecords.py falls back to the
 * regular expressions when this module is not built, and the tests compare the two on valid,
 * mutated and random input (tests/unit/provenance/test_fastrecords.py). Every read is bounded
 * by the end of the run; the input is untrusted (a spool file, an edge's POST body).
 *
 * Hashes of a whole batch go eight at a time through _sha256_lanes.h where the CPU has AVX2 but no
 * SHA instructions, through the SHA instructions directly (_sha256_ni.h) where it has them, else
 * one at a time through OpenSSL; all give the same bytes.
 *
 * No I/O; no state between calls but a reused hashing context and that choice: each call is a
 * function of its arguments alone. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <string.h>
#include "_crc32_clmul.h" /* zlib's CRC-32, by carry-less multiplication where it can */

#include "_sha256_lanes.h"
#include "_sha256_ni.h"

/* SHA-256 through OpenSSL's EVP interface (the library Python's hashlib uses), with one context
 * reused for every hash: the digest is fetched once, at import (OpenSSL 3 would otherwise look
 * it up in its providers at every init). One context is safe: no function here releases the
 * GIL, so no two calls run at once. */
static EVP_MD *sha256_md;
static EVP_MD_CTX *sha256_ctx;

/* RFC 9162 §2.1.1: a leaf is SHA-256(0x00 || d), an interior node SHA-256(0x01 || l || r). */
static int hash2(unsigned char prefix, const void *a, size_t an, const void *b, size_t bn,
                 unsigned char out[32]) {
    return EVP_DigestInit_ex(sha256_ctx, sha256_md, NULL) == 1 &&
           EVP_DigestUpdate(sha256_ctx, &prefix, 1) == 1 &&
           EVP_DigestUpdate(sha256_ctx, a, an) == 1 &&
           (bn == 0 || EVP_DigestUpdate(sha256_ctx, b, bn) == 1) &&
           EVP_DigestFinal_ex(sha256_ctx, out, NULL) == 1;
}

/* Eight lanes at once, or OpenSSL: chosen at import by the CPU (sha256_lanes_pay), switchable
 * for the tests (set_sha256_lanes). Fewer messages than this go to OpenSSL: a lane step costs
 * what about three single blocks do. */
static int use_lanes;
enum { LANES_FROM = 3 };
/* The SHA extensions directly, where the CPU has them (_sha256_ni.h), for messages up to
 * NI_WHOLE_BYTES (records and nodes): OpenSSL's per-call cost was a tenth of a record's leaf
 * hash and half of a node's. Longer messages go to OpenSSL, whose unrolled code hashes long
 * runs of blocks faster. Switchable for the tests (set_sha256_ni). */
static int use_ni;
/* Two messages at a time through the SHA extensions (sha256_ni_pair); switchable for the tests
 * and for comparing (set_sha256_ni_pairs). */
static int use_ni_pairs = 1;

/* Every message's hash into its ``out``; 0 if OpenSSL failed. */
static int hash_all(lane_message_t *messages, size_t count) {
    if (use_lanes && count >= LANES_FROM) {
        sha256_lanes(messages, count);
        return 1;
    }
    const lane_message_t *waiting = NULL; /* a message that fits, waiting for a partner */
    for (size_t i = 0; i < count; i++) {
        const lane_message_t *m = &messages[i];
        if (use_ni && sha256_ni_fits(m)) {
            if (use_ni_pairs && waiting == NULL) {
                waiting = m;
                continue;
            }
            if (waiting != NULL) {
                sha256_ni_pair(waiting, m);
                waiting = NULL;
            } else {
                sha256_ni_message(m);
            }
        } else if (!hash2(m->prefix, m->a, m->an, m->b, m->bn, m->out)) {
            return 0;
        }
    }
    if (waiting != NULL) sha256_ni_message(waiting);
    return 1;
}

/* The digests of `messages` laid end to end in one bytes object (32 bytes each), each
 * message's ``out`` set to its place in it; NULL with an exception set on failure. */
static PyObject *digest_blob(lane_message_t *messages, size_t count) {
    PyObject *blob = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(count * 32));
    if (blob == NULL) return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(blob);
    for (size_t i = 0; i < count; i++) messages[i].out = out + 32 * i;
    if (!hash_all(messages, count)) {
        Py_DECREF(blob);
        PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
        return NULL;
    }
    return blob;
}

/* The same digests as a list of 32-byte bytes objects. */
static PyObject *digest_list(lane_message_t *messages, size_t count) {
    PyObject *blob = digest_blob(messages, count);
    if (blob == NULL) return NULL;
    const char *digests = PyBytes_AS_STRING(blob);
    PyObject *list = PyList_New((Py_ssize_t)count);
    for (size_t i = 0; list != NULL && i < count; i++) {
        PyObject *digest = PyBytes_FromStringAndSize(digests + 32 * i, 32);
        if (digest == NULL) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)i, digest);
    }
    Py_DECREF(blob);
    return list;
}

typedef struct {
    const char *p;
    Py_ssize_t n; /* -1: null */
} span_t;

typedef struct {
    long long bytes, origin_bytes;
    int status;
    int cache, tier, use;
    span_t content_id, creator, edge, manifest, method, request_id, sample_rate, ts,
        upstream_of;
} record_t;

static const char *const CACHES[] = {"hit", "miss", "stale", "revalidated", "bypass", "error"};
static const char *const TIERS[] = {"memory", "disk", "origin", "none"};
static const char *const USES[] = {"view", "training"};
#define N_CACHES 6
#define N_TIERS 4
#define N_USES 2

static PyObject *cache_names[N_CACHES], *tier_names[N_TIERS], *use_names[N_USES];

/* Character classes, one table: bit 1 name start ([A-Za-z0-9]), 2 name rest ([A-Za-z0-9._-]),
 * 4 tchar (RFC 9110 §5.6.2), 8 request id ([\x21\x23-\x5b\x5d-\x7e]), 16 lowercase hex. */
static unsigned char classes[256];

static void init_classes(void) {
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        int alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (alnum) k |= 1 | 2 | 4;
        if (c == '.' || c == '_' || c == '-') k |= 2;
        if (c && strchr("!#$%&'*+.^_`|~-", c)) k |= 4;
        if (c >= 0x21 && c <= 0x7e && c != '"' && c != '\\') k |= 8;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) k |= 16;
        classes[c] = k;
    }
}

#define IS(c, bit) (classes[(unsigned char)(c)] & (bit))
#define DIGIT(c) ((c) >= '0' && (c) <= '9')

/* Each step takes the cursor and the end of the run, and returns the cursor after what it
 * accepted, or NULL. A NULL cursor passes through every step (one check at the end). */

static const char *lit(const char *p, const char *lim, const char *s, Py_ssize_t n) {
    if (p == NULL || lim - p < n || memcmp(p, s, (size_t)n) != 0) return NULL;
    return p + n;
}
#define LIT(p, s) lit((p), lim, (s), (Py_ssize_t)(sizeof(s) - 1))

static int starts(const char *p, const char *lim, const char *s, Py_ssize_t n) {
    return p != NULL && lim - p >= n && memcmp(p, s, (size_t)n) == 0;
}
#define STARTS(p, s) starts((p), lim, (s), (Py_ssize_t)(sizeof(s) - 1))

/* 0 | [1-9][0-9]{0,14}: what follows is never a digit, so the longest run decides. */
static const char *integer(const char *p, const char *lim, long long *out) {
    if (p == NULL) return NULL;
    const char *q = p;
    long long v = 0;
    while (q < lim && DIGIT(*q) && q - p < 16) v = v * 10 + (*q++ - '0');
    Py_ssize_t n = q - p;
    if (n == 0 || n > 15 || (q < lim && DIGIT(*q)) || (n > 1 && *p == '0')) return NULL;
    *out = v;
    return q;
}

/* A quoted run of `bit` characters, min..max long, up to its closing quote. */
static const char *quoted(const char *p, const char *lim, int bit, Py_ssize_t min,
                          Py_ssize_t max, span_t *out) {
    if (p == NULL || p >= lim || *p != '"') return NULL;
    const char *s = ++p;
    while (p < lim && p - s <= max && IS(*p, bit)) p++;
    Py_ssize_t n = p - s;
    if (n < min || n > max || p >= lim || *p != '"') return NULL;
    out->p = s;
    out->n = n;
    return p + 1;
}

/* [A-Za-z0-9][A-Za-z0-9._-]{0,63}, quoted */
static const char *name(const char *p, const char *lim, span_t *out) {
    p = quoted(p, lim, 2, 1, 64, out);
    return p != NULL && IS(out->p[0], 1) ? p : NULL;
}

static const char *null_or(const char *p, const char *lim, span_t *out,
                           const char *(*value)(const char *, const char *, span_t *)) {
    if (STARTS(p, "null")) {
        out->p = NULL;
        out->n = -1;
        return p + 4;
    }
    return value(p, lim, out);
}

/* "sha256:" + 64 lowercase hex, quoted; the span is the whole value */
static const char *content_id(const char *p, const char *lim, span_t *out) {
    p = LIT(p, "\"sha256:");  /* NULL in, NULL out */
    if (p == NULL || lim - p < 65) return NULL;
    for (int i = 0; i < 64; i++)
        if (!IS(p[i], 16)) return NULL;
    if (p[64] != '"') return NULL;
    out->p = p - 7;
    out->n = 71;
    return p + 65;
}

static const char *choice(const char *p, const char *lim, const char *const *names, int count,
                          int *out) {
    if (p == NULL || p >= lim || *p != '"') return NULL;
    p++;
    for (int i = 0; i < count; i++) {
        Py_ssize_t n = (Py_ssize_t)strlen(names[i]);
        if (lim - p > n && memcmp(p, names[i], (size_t)n) == 0 && p[n] == '"') {
            *out = i;
            return p + n + 1;
        }
    }
    return NULL;
}

/* "0" | "1" | "0." [0-9]{0,5} [1-9], quoted */
static const char *sample_rate(const char *p, const char *lim, span_t *out) {
    if (p == NULL || p >= lim || *p != '"') return NULL;
    const char *s = ++p;
    while (p < lim && p - s <= 8 && *p != '"') p++;
    Py_ssize_t n = p - s;
    if (p >= lim || *p != '"' || n < 1) return NULL;
    if (n == 1) {
        if (*s != '0' && *s != '1') return NULL;
    } else {
        if (n < 3 || n > 8 || s[0] != '0' || s[1] != '.' || s[n - 1] == '0') return NULL;
        for (Py_ssize_t i = 2; i < n; i++)
            if (!DIGIT(s[i])) return NULL;
    }
    out->p = s;
    out->n = n;
    return p + 1;
}

/* [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z, quoted (the calendar is
 * the caller's: once per distinct second) */
static const char *timestamp(const char *p, const char *lim, span_t *out) {
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (p == NULL || lim - p < 26 || *p != '"' || p[25] != '"') return NULL;
    for (int i = 0; i < 24; i++) {
        char c = p[1 + i];
        if (shape[i] == 'd' ? !DIGIT(c) : c != shape[i]) return NULL;
    }
    out->p = p + 1;
    out->n = 24;
    return p + 26;
}

/* One record from p; the cursor after it, or NULL. Keys in RFC 8785 order. */
static const char *record(const char *p, const char *lim, record_t *r) {
    span_t unused;
    p = LIT(p, "{\"bytes\":");
    p = integer(p, lim, &r->bytes);
    p = LIT(p, ",\"cache\":");
    p = choice(p, lim, CACHES, N_CACHES, &r->cache);
    if (STARTS(p, ",\"cache_key_hash\":"))
        p = content_id(LIT(p, ",\"cache_key_hash\":"), lim, &unused);
    p = LIT(p, ",\"content_id\":");
    p = null_or(p, lim, &r->content_id, content_id);
    p = LIT(p, ",\"creator\":");
    p = null_or(p, lim, &r->creator, name);
    p = LIT(p, ",\"edge\":");
    p = p == NULL ? NULL : name(p, lim, &r->edge);
    p = LIT(p, ",\"manifest\":");
    p = null_or(p, lim, &r->manifest, content_id);
    p = LIT(p, ",\"method\":");
    p = quoted(p, lim, 4, 1, 32, &r->method);
    p = LIT(p, ",\"origin_bytes\":");
    p = integer(p, lim, &r->origin_bytes);
    p = LIT(p, ",\"request_id\":");
    p = quoted(p, lim, 8, 1, 128, &r->request_id);
    p = LIT(p, ",\"sample_rate\":");
    p = sample_rate(p, lim, &r->sample_rate);
    p = LIT(p, ",\"status\":");
    if (p == NULL || lim - p < 3 || p[0] < '1' || p[0] > '5' || !DIGIT(p[1]) || !DIGIT(p[2]))
        return NULL;
    r->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    p += 3;
    p = LIT(p, ",\"tier\":");
    p = choice(p, lim, TIERS, N_TIERS, &r->tier);
    if (STARTS(p, ",\"trace_id\":\"")) {
        const char *t = p + 13;
        int nonzero = 0;
        if (lim - t < 33 || t[32] != '"') return NULL;
        for (int i = 0; i < 32; i++) {
            if (!IS(t[i], 16)) return NULL;
            nonzero |= t[i] != '0';
        }
        if (!nonzero) return NULL;
        p = t + 33;
    }
    p = LIT(p, ",\"ts\":");
    p = p == NULL ? NULL : timestamp(p, lim, &r->ts);
    p = LIT(p, ",\"upstream_of\":");
    p = null_or(p, lim, &r->upstream_of, name);
    p = LIT(p, ",\"use\":");
    p = choice(p, lim, USES, N_USES, &r->use);
    p = LIT(p, ",\"v\":1}");
    if (p == NULL) return NULL;
    if (r->manifest.n >= 0 && (r->creator.n < 0 || r->content_id.n < 0)) return NULL;
    return p;
}

/* A str for a span, reusing the previous record's object when the bytes are the same (edges,
 * creators, content and manifest ids repeat within a batch). */
typedef struct {
    span_t span;
    PyObject *value; /* borrowed from the fields list being built */
} last_t;

static PyObject *text(span_t s, last_t *last) {
    if (s.n < 0) return Py_NewRef(Py_None);
    if (last->value != NULL && last->span.n == s.n && memcmp(last->span.p, s.p, (size_t)s.n) == 0)
        return Py_NewRef(last->value);
    PyObject *value = PyUnicode_DecodeASCII(s.p, s.n, NULL);
    if (value == NULL) return NULL;
    last->span = s;
    last->value = value;
    return value;
}

enum { WANT_RECORDS = 1, WANT_STAMPS = 2, WANT_FIELDS = 4, WANT_LEAVES = 8 };

/* RecordFields order: request_id, edge, ts, upstream_of, method, status, cache, tier, bytes,
 * origin_bytes, content_id, creator, manifest, sample_rate, use */
static PyObject *fields_of(const record_t *r, PyTypeObject *type, last_t *last) {
    PyObject *items[15] = {
        PyUnicode_DecodeASCII(r->request_id.p, r->request_id.n, NULL),
        text(r->edge, &last[0]),
        PyUnicode_DecodeASCII(r->ts.p, r->ts.n, NULL),
        text(r->upstream_of, &last[1]),
        text(r->method, &last[2]),
        PyLong_FromLong(r->status),
        Py_NewRef(cache_names[r->cache]),
        Py_NewRef(tier_names[r->tier]),
        PyLong_FromLongLong(r->bytes),
        PyLong_FromLongLong(r->origin_bytes),
        text(r->content_id, &last[3]),
        text(r->creator, &last[4]),
        text(r->manifest, &last[5]),
        text(r->sample_rate, &last[6]),
        Py_NewRef(use_names[r->use]),
    };
    /* Filled only once every item exists: a tuple the collector can see never holds NULL. */
    PyObject *t = NULL;
    int i;
    for (i = 0; i < 15 && items[i] != NULL; i++) {
    }
    if (i == 15) t = type == NULL ? PyTuple_New(15) : type->tp_alloc(type, 15);
    if (t == NULL) {
        for (i = 0; i < 15; i++) Py_XDECREF(items[i]);
        return NULL;
    }
    for (i = 0; i < 15; i++) PyTuple_SET_ITEM(t, i, items[i]);
    return t;
}

static int append_new(PyObject *list, PyObject *item) {
    if (item == NULL) return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

/* `items` with room for item `count` (doubling `*capacity` when full), or NULL with
 * MemoryError set; `items` stays valid and the caller's to free either way. */
static void *room_for(void *items, size_t *capacity, size_t count, size_t item_size) {
    if (count < *capacity) return items;
    size_t wanted = *capacity ? 2 * *capacity : 64;
    void *grown = PyMem_Realloc(items, wanted * item_size);
    if (grown == NULL) return PyErr_NoMemory();
    *capacity = wanted;
    return grown;
}

/* The growing list of leaf messages both scans hash in one call once their records check. */
typedef struct {
    lane_message_t *items;
    size_t count, capacity;
} leaf_queue_t;

/* Queue the RFC 9162 §2.1.1 leaf message (0x00 || record) of the record at p..q; -1 with
 * MemoryError set. */
static int queue_leaf(leaf_queue_t *queue, const char *p, const char *q) {
    lane_message_t *grown = room_for(queue->items, &queue->capacity, queue->count,
                                     sizeof *queue->items);
    if (grown == NULL) return -1;
    queue->items = grown;
    queue->items[queue->count++] =
        (lane_message_t){(const unsigned char *)p, NULL, (size_t)(q - p), 0, 0x00, NULL};
    return 0;
}

/* Add the second of `ts` (its first 19 bytes) to `seconds` unless it is the one added last
 * (`*second`): the distinct seconds for the caller's calendar check. -1 on failure. */
static int note_second(PyObject *seconds, const char **second, const char *ts) {
    if (*second != NULL && memcmp(*second, ts, 19) == 0) return 0;
    *second = ts;
    return append_new(seconds, PyBytes_FromStringAndSize(ts, 19));
}

PyDoc_STRVAR(scan_records_doc,
"scan_records(data, start, end, separator, edge, want, fields_type, /)\n--\n\n"
"Check data[start:end] as one or more canonical records joined by the byte `separator`.\n"
"None unless every record is valid (and, if `edge` is not None, of that edge). Otherwise a\n"
"tuple (records, stamps, seconds, fields, leaves): the records' bytes if want & 1, their ts\n"
"values (bytes) if want & 2, the distinct ts seconds (bytes, 19 chars; a second is listed\n"
"again only when a record between changed it), if want & 4 each record's fields as a\n"
"`fields_type` (a tuple subclass, or None for plain tuples) in RecordFields order, and if\n"
"want & 8 each record's RFC 9162 leaf hash.");

static PyObject *scan_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "scan_records takes 7 arguments");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL, *records = NULL, *stamps = NULL, *seconds = NULL, *fields = NULL;
    PyObject *leaves = NULL;
    leaf_queue_t queue = {NULL, 0, 0};
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), end = PyLong_AsSsize_t(args[2]);
    long separator = PyLong_AsLong(args[3]), want = PyLong_AsLong(args[5]);
    const char *edge = NULL;
    Py_ssize_t edge_n = 0;
    PyTypeObject *type = NULL;
    if (PyErr_Occurred()) goto done;
    if (args[4] != Py_None) {
        if (!PyBytes_Check(args[4])) {
            PyErr_SetString(PyExc_TypeError, "edge must be bytes or None");
            goto done;
        }
        edge = PyBytes_AS_STRING(args[4]);
        edge_n = PyBytes_GET_SIZE(args[4]);
    }
    if (args[6] != Py_None) {
        if (!PyType_Check(args[6]) || !PyType_IsSubtype((PyTypeObject *)args[6], &PyTuple_Type)) {
            PyErr_SetString(PyExc_TypeError, "fields_type must be a tuple subclass or None");
            goto done;
        }
        type = (PyTypeObject *)args[6];
    }
    if (start < 0 || end > view.len || start > end || separator < 0 || separator > 255) {
        PyErr_SetString(PyExc_ValueError, "scan_records: bad range or separator");
        goto done;
    }
    records = (want & WANT_RECORDS) ? PyList_New(0) : Py_NewRef(Py_None);
    stamps = (want & WANT_STAMPS) ? PyList_New(0) : Py_NewRef(Py_None);
    fields = (want & WANT_FIELDS) ? PyList_New(0) : Py_NewRef(Py_None);
    leaves = (want & WANT_LEAVES) ? PyList_New(0) : Py_NewRef(Py_None);
    seconds = PyList_New(0);
    if (records == NULL || stamps == NULL || fields == NULL || leaves == NULL || seconds == NULL)
        goto done;
    const char *base = (const char *)view.buf, *p = base + start, *lim = base + end;
    const char *second = NULL;
    last_t last[7] = {{{NULL, 0}, NULL}};
    if (p == lim) goto invalid;
    for (;;) {
        record_t r;
        const char *q = record(p, lim, &r);
        if (q == NULL) goto invalid;
        if (edge != NULL && (r.edge.n != edge_n || memcmp(r.edge.p, edge, (size_t)edge_n) != 0))
            goto invalid;
        if ((want & WANT_RECORDS) &&
            append_new(records, PyBytes_FromStringAndSize(p, q - p)) < 0)
            goto done;
        if ((want & WANT_STAMPS) &&
            append_new(stamps, PyBytes_FromStringAndSize(r.ts.p, r.ts.n)) < 0)
            goto done;
        if (note_second(seconds, &second, r.ts.p) < 0) goto done;
        if ((want & WANT_FIELDS) && append_new(fields, fields_of(&r, type, last)) < 0)
            goto done;
        /* hashed together once all are valid */
        if ((want & WANT_LEAVES) && queue_leaf(&queue, p, q) < 0) goto done;
        if (q == lim) break;
        if ((unsigned char)*q != (unsigned char)separator) goto invalid;
        p = q + 1;
    }
    if (want & WANT_LEAVES) {
        Py_SETREF(leaves, digest_list(queue.items, queue.count));
        if (leaves == NULL) goto done;
    }
    result = PyTuple_Pack(5, records, stamps, seconds, fields, leaves);
    goto done;
invalid:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(records);
    Py_XDECREF(stamps);
    Py_XDECREF(seconds);
    Py_XDECREF(fields);
    Py_XDECREF(leaves);
    PyMem_Free(queue.items);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(merkle_root_doc,
"merkle_root(leaf_hashes, /)\n--\n\n"
"RFC 9162 §2.1.1 MTH of the leaves whose hashes (32 bytes each) are given, in a list or tuple,\n"
"or laid end to end in one bytes-like object. ValueError for a leaf hash of another length.");

static PyObject *merkle_root(PyObject *module, PyObject *arg) {
    (void)module;
    PyObject *seq = NULL;
    Py_buffer blob = {0};
    Py_ssize_t n;
    if (!PyList_Check(arg) && !PyTuple_Check(arg) && PyObject_CheckBuffer(arg)) {
        if (PyObject_GetBuffer(arg, &blob, PyBUF_SIMPLE) < 0) return NULL;
        if (blob.len % 32 != 0) {
            PyBuffer_Release(&blob);
            PyErr_SetString(PyExc_ValueError, "leaf hashes are 32 bytes");
            return NULL;
        }
        n = blob.len / 32;
    } else {
        seq = PySequence_Fast(arg, "merkle_root takes a sequence of leaf hashes");
        if (seq == NULL) return NULL;
        n = PySequence_Fast_GET_SIZE(seq);
    }
    unsigned char root[32];
    if (n == 0) {
        Py_XDECREF(seq);
        if (blob.obj != NULL) PyBuffer_Release(&blob);
        /* MTH({}) = SHA-256 of the empty string, without the leaf prefix */
        if (EVP_Digest("", 0, root, NULL, sha256_md, NULL) != 1) goto failed;
        return PyBytes_FromStringAndSize((const char *)root, 32);
    }
    unsigned char *level = PyMem_Malloc((size_t)n * 32);
    if (level == NULL) {
        Py_XDECREF(seq);
        if (blob.obj != NULL) PyBuffer_Release(&blob);
        return PyErr_NoMemory();
    }
    if (blob.obj != NULL) {
        memcpy(level, blob.buf, (size_t)n * 32);
        PyBuffer_Release(&blob);
    }
    PyObject **items = seq == NULL ? NULL : PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; items != NULL && i < n; i++) {
        PyObject *item = items[i];
        const char *bytes = PyBytes_Check(item)       ? PyBytes_AS_STRING(item)
                            : PyByteArray_Check(item) ? PyByteArray_AS_STRING(item)
                                                      : NULL;
        if (bytes == NULL || Py_SIZE(item) != 32) {
            PyMem_Free(level);
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "leaf hashes are 32 bytes");
            return NULL;
        }
        memcpy(level + i * 32, bytes, 32);
    }
    Py_XDECREF(seq);
    /* Level by level; an unpaired last node moves up unchanged. That is MTH's split at the
     * largest power of two below n (RFC 9162 §2.1.1), as the tests check against
     * provenance.merkle. A level's nodes are hashed together into the other buffer. */
    unsigned char *above = PyMem_Malloc((size_t)(n / 2 + 1) * 32);
    lane_message_t *messages = PyMem_Malloc((size_t)(n / 2 + 1) * sizeof *messages);
    int hashed = above != NULL && messages != NULL;
    while (hashed && n > 1) {
        Py_ssize_t pairs = n / 2;
        for (Py_ssize_t i = 0; i < pairs; i++)
            messages[i] = (lane_message_t){level + 64 * i, NULL, 64, 0, 0x01, above + 32 * i};
        hashed = hash_all(messages, (size_t)pairs);
        if (n % 2) memcpy(above + 32 * pairs, level + 32 * (n - 1), 32);
        unsigned char *swap = level;
        level = above;
        above = swap;
        n = pairs + n % 2;
    }
    PyObject *result = NULL;
    if (above == NULL || messages == NULL)
        PyErr_NoMemory();
    else if (hashed)
        result = PyBytes_FromStringAndSize((const char *)level, 32);
    PyMem_Free(level);
    PyMem_Free(above);
    PyMem_Free(messages);
    if (result == NULL && !PyErr_Occurred()) goto failed;
    return result;
failed:
    PyErr_SetString(PyExc_RuntimeError, "SHA-256 failed");
    return NULL;
}

PyDoc_STRVAR(leaf_hashes_doc,
"leaf_hashes(entries, /)\n--\n\n"
"RFC 9162 §2.1.1 leaf hash SHA-256(0x00 || entry) of each entry (bytes), in a list.");

static PyObject *leaf_hashes(PyObject *module, PyObject *arg) {
    (void)module;
    PyObject *seq = PySequence_Fast(arg, "leaf_hashes takes a sequence of bytes");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq), *result = NULL;
    lane_message_t *messages = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *messages);
    if (messages == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_Check(items[i])) {
            PyErr_SetString(PyExc_TypeError, "leaf_hashes takes bytes");
            goto done;
        }
        messages[i] = (lane_message_t){(const unsigned char *)PyBytes_AS_STRING(items[i]), NULL,
                                       (size_t)PyBytes_GET_SIZE(items[i]), 0, 0x00, NULL};
    }
    result = digest_list(messages, (size_t)n);
done:
    PyMem_Free(messages);
    Py_DECREF(seq);
    return result;
}

PyDoc_STRVAR(set_sha256_lanes_doc,
"set_sha256_lanes(on, /)\n--\n\n"
"Hash batches eight at a time (AVX2) if `on`, else one at a time through OpenSSL; returns the\n"
"previous setting. Only for tests and benches: import chooses what pays on this CPU.\n"
"ValueError to turn lanes on where the CPU lacks AVX2 or this is not an x86-64 build.");

/* Set a hashing path's flag from `arg` (turning it on only where `available`); the old value. */
static PyObject *switch_path(int *flag, PyObject *arg, int available, const char *missing) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    if (on && !available) {
        PyErr_SetString(PyExc_ValueError, missing);
        return NULL;
    }
    int previous = *flag;
    *flag = on;
    return PyBool_FromLong(previous);
}

static PyObject *set_sha256_lanes(PyObject *module, PyObject *arg) {
    (void)module;
    return switch_path(&use_lanes, arg, sha256_lanes_available(),
                       "eight-lane SHA-256 needs AVX2 on x86-64");
}

PyDoc_STRVAR(set_sha256_ni_doc,
"set_sha256_ni(on, /)\n--\n\n"
"Hash with the CPU's SHA extensions directly if `on`, else through OpenSSL (or eight lanes,\n"
"if they are on); returns the previous setting. Only for tests and benches: import turns it\n"
"on where the CPU has them. ValueError to turn it on where it lacks them.");

static PyObject *set_sha256_ni(PyObject *module, PyObject *arg) {
    (void)module;
    return switch_path(&use_ni, arg, sha256_ni_available(),
                       "this CPU has no SHA extensions (or this is no x86-64)");
}

PyDoc_STRVAR(set_sha256_ni_pairs_doc,
"set_sha256_ni_pairs(on, /)\n--\n\n"
"With the SHA extensions on, hash two messages side by side if `on`, else one at a time;\n"
"returns the previous setting. Only for tests and benches: on by default.");

static PyObject *set_sha256_ni_pairs(PyObject *module, PyObject *arg) {
    (void)module;
    return switch_path(&use_ni_pairs, arg, 1, "");
}

/* ---- runs of spool frames (proxy/records/segments.py, the sealer's common case) ---------- */

enum { FRAME_HEADER = 8, MAX_FRAME_PAYLOAD = 1 << 20 };

static unsigned long be32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return ((unsigned long)u[0] << 24) | ((unsigned long)u[1] << 16) |
           ((unsigned long)u[2] << 8) | (unsigned long)u[3];
}

/* [0-9]{1,18} up to `lim` or a non-digit; its value in *out. */
static const char *counter(const char *p, const char *lim, long long *out) {
    if (p == NULL) return NULL;
    const char *q = p;
    long long v = 0;
    while (q < lim && DIGIT(*q) && q - p < 19) v = v * 10 + (*q++ - '0');
    if (q == p || q - p > 18) return NULL;
    *out = v;
    return q;
}

/* The whole of [p, lim) is "#served=N,dropped=M" (segments.py's counters line). */
static int counters_line(const char *p, const char *lim, long long *served, long long *dropped) {
    p = counter(LIT(p, "#served="), lim, served);
    p = counter(LIT(p, ",dropped="), lim, dropped);
    return p != NULL && p == lim;
}

/* The frame's CRC-32 (zlib's, as segments.py computes it through zlib or ISA-L: the same
 * function) of its 4 length bytes and its payload. In C: with one record per frame, calling back
 * into Python for it (two calls and two memoryviews a frame) cost more than the CRC itself. */
static unsigned long frame_crc(const char *frame, const char *payload, unsigned long size) {
    uint32_t crc = crc32_frame(0, (const unsigned char *)frame, 4);
    return crc32_frame(crc, (const unsigned char *)payload, (size_t)size);
}

typedef struct {
    const char *p, *q; /* a record's bytes */
    span_t ts;
} span_pair_t;

#define TS_BYTES 24 /* a record's ts: "YYYY-MM-DDTHH:MM:SS.mmmZ" */

/* A growable column of bytes, returned to Python as one bytes object: a run's per-record
   values without a Python object per record (the sealer keeps them in arrays). */
typedef struct {
    char *data;
    size_t size, capacity;
} column_t;

static int column_put(column_t *column, const void *item, size_t n) {
    if (column->size + n > column->capacity) {
        size_t capacity = column->capacity ? column->capacity * 2 : 4096;
        while (capacity < column->size + n) capacity *= 2;
        char *grown = PyMem_Realloc(column->data, capacity);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        column->data = grown;
        column->capacity = capacity;
    }
    memcpy(column->data + column->size, item, n);
    column->size += n;
    return 0;
}

static int column_int(column_t *column, long long value) {
    int64_t item = (int64_t)value;
    return column_put(column, &item, sizeof item);
}

static PyObject *column_bytes(const column_t *column) {
    return PyBytes_FromStringAndSize(column->data, (Py_ssize_t)column->size);
}

enum { COL_STARTS, COL_STOPS, COL_STAMPS, COL_SEGMENTS, COL_OFFSETS, COL_SKIPS, COL_SERVED,
       COL_DROPPED, COLUMNS };

PyDoc_STRVAR(scan_spool_run_doc,
"scan_spool_run(data, start, base, segment, edge, /)\n--\n\n"
"The run of consecutive spool frames from data[start] whose every record is a valid record\n"
"of `edge` (bytes) with a real frame CRC (zlib's CRC-32 of length and payload), as\n"
"proxy/records/segments.py frames and decodes them. Stops before the first frame that is\n"
"missing, torn, corrupt, or holds anything else (an invalid record, another edge's, an odd\n"
"counters line): the caller reads that one its own way. Returns (end, starts, stops, stamps,\n"
"seconds, leaves, end_segments, end_offsets, end_skips, served, dropped, first_count): `end`\n"
"the offset past the run (start if it is empty); per record where its bytes are in `data`\n"
"(data[start:stop], not copied: join_spans builds a batch from them), its ts, its RFC 9162\n"
"leaf hash, the spool position just after it in three columns (segment, base + frame offset,\n"
"index + 1; or segment, base + frame end, 0 for a frame's last record) and the answers it\n"
"stands for (1 and 0; a frame's last record also takes the frame's answers beyond its\n"
"records, from its counters line); the distinct ts seconds as scan_records gives them, for\n"
"the caller's calendar check; and how many records the first frame holds. Each per-record\n"
"value is in one bytes object for the run, record after record: the ints as native int64s\n"
"(array('q').frombytes reads them), the ts as 24 bytes each, the leaf hashes as 32.");

static PyObject *scan_spool_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "scan_spool_run takes 5 arguments");
        return NULL;
    }
    if (!PyLong_CheckExact(args[3]) || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "scan_spool_run: segment must be an int, edge bytes");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL, *seconds = NULL, *leaves = NULL, *blobs[COLUMNS] = {NULL};
    column_t columns[COLUMNS];
    memset(columns, 0, sizeof columns);
    leaf_queue_t queue = {NULL, 0, 0};
    span_pair_t *spans = NULL;
    size_t spans_capacity = 0;
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    long long base = PyLong_AsLongLong(args[2]);
    long long segment_number = PyLong_AsLongLong(args[3]);
    const char *edge = PyBytes_AS_STRING(args[4]);
    Py_ssize_t edge_n = PyBytes_GET_SIZE(args[4]);
    Py_ssize_t first_count = -1;
    if (PyErr_Occurred()) goto done;
    if (start < 0 || start > view.len) {
        PyErr_SetString(PyExc_ValueError, "scan_spool_run: start out of range");
        goto done;
    }
    seconds = PyList_New(0);
    if (seconds == NULL) goto done;
    const char *data = (const char *)view.buf, *second = NULL;
    Py_ssize_t offset = start;
    for (;;) {
        if (view.len - offset < FRAME_HEADER) break;
        unsigned long size = be32(data + offset), stored = be32(data + offset + 4);
        if (size == 0 || size > MAX_FRAME_PAYLOAD ||
            (Py_ssize_t)size > view.len - offset - FRAME_HEADER)
            break;
        const char *payload = data + offset + FRAME_HEADER, *lim = payload + size;
        if (frame_crc(data + offset, payload, size) != stored) break;
        /* A last line starting with '#' (after a newline) can only be the counters line. */
        const char *body_end = lim;
        long long frame_served = -1, frame_dropped = 0;
        /* memrchr, not a byte loop: a one-record frame (the mapped writer's) has no newline,
           and walking back over all of it was a fifth of this function's time. */
        const char *newline = memrchr(payload, '\n', (size_t)size);
        const char *last_line = newline == NULL ? payload : newline + 1;
        if (last_line > payload && last_line < lim && *last_line == '#') {
            if (!counters_line(last_line, lim, &frame_served, &frame_dropped)) break;
            body_end = last_line - 1;
        }
        /* Check every record of the frame before taking any. */
        Py_ssize_t frame_records = 0;
        const char *p = payload;
        int valid = p < body_end;
        while (valid) {
            record_t r;
            const char *q = record(p, body_end, &r);
            if (q == NULL || r.edge.n != edge_n || memcmp(r.edge.p, edge, (size_t)edge_n) != 0 ||
                r.ts.n != TS_BYTES) {
                valid = 0;
                break;
            }
            span_pair_t *grown = room_for(spans, &spans_capacity, (size_t)frame_records,
                                          sizeof *spans);
            if (grown == NULL) goto done;
            spans = grown;
            spans[frame_records++] = (span_pair_t){p, q, r.ts};
            if (q == body_end) break;
            if (*q != '\n') {
                valid = 0;
                break;
            }
            p = q + 1;
        }
        if (!valid) break;
        long long extra = frame_served < 0 ? 0 : frame_served - frame_records;
        if (extra < 0) extra = 0;
        long long frame_offset = base + offset;
        long long frame_end = base + offset + FRAME_HEADER + (long long)size;
        for (Py_ssize_t index = 0; index < frame_records; index++) {
            const span_pair_t *span = &spans[index];
            int last = index == frame_records - 1;
            if (column_int(&columns[COL_SEGMENTS], segment_number) < 0 ||
                column_int(&columns[COL_OFFSETS], last ? frame_end : frame_offset) < 0 ||
                column_int(&columns[COL_SKIPS], last ? 0 : index + 1) < 0 ||
                column_int(&columns[COL_STARTS], span->p - data) < 0 ||
                column_int(&columns[COL_STOPS], span->q - data) < 0 ||
                column_put(&columns[COL_STAMPS], span->ts.p, TS_BYTES) < 0 ||
                note_second(seconds, &second, span->ts.p) < 0 ||
                column_int(&columns[COL_SERVED], last ? 1 + extra : 1) < 0 ||
                column_int(&columns[COL_DROPPED], last ? frame_dropped : 0) < 0 ||
                queue_leaf(&queue, span->p, span->q) < 0)
                goto done;
        }
        if (first_count < 0) first_count = frame_records;
        offset = offset + FRAME_HEADER + (Py_ssize_t)size;
    }
    leaves = digest_blob(queue.items, queue.count);
    if (leaves == NULL) goto done;
    for (int c = 0; c < COLUMNS; c++)
        if ((blobs[c] = column_bytes(&columns[c])) == NULL) goto done;
    result = Py_BuildValue("(nOOOOOOOOOOn)", offset, blobs[COL_STARTS], blobs[COL_STOPS],
                           blobs[COL_STAMPS], seconds, leaves, blobs[COL_SEGMENTS],
                           blobs[COL_OFFSETS], blobs[COL_SKIPS], blobs[COL_SERVED],
                           blobs[COL_DROPPED], first_count < 0 ? 0 : first_count);
done:
    Py_XDECREF(seconds);
    Py_XDECREF(leaves);
    for (int c = 0; c < COLUMNS; c++) {
        Py_XDECREF(blobs[c]);
        PyMem_Free(columns[c].data);
    }
    PyMem_Free(queue.items);
    PyMem_Free(spans);
    PyBuffer_Release(&view);
    return result;
}


PyDoc_STRVAR(join_spans_doc,
"join_spans(buffers, starts, stops, separator, /)\n--\n\n"
"separator.join(b[s:e] for b, s, e in zip(buffers, starts, stops)) in one copy: the sealer's\n"
"records body from the spool bytes they lie in (scan_spool_run). buffers a list of bytes;\n"
"starts and stops lists of ints or arrays of native int64s (array('q')), as long as buffers,\n"
"with 0 <= start <= stop <= len(buffer); else TypeError or ValueError.");

/* A list of ints or a buffer of int64s, read item by item. */
typedef struct {
    PyObject *list;
    Py_buffer view;
    Py_ssize_t count;
} int_column_t;

static int int_column_open(int_column_t *column, PyObject *source) {
    column->list = NULL;
    column->view.obj = NULL;
    if (PyList_Check(source)) {
        column->list = source;
        column->count = PyList_GET_SIZE(source);
        return 0;
    }
    if (PyObject_GetBuffer(source, &column->view, PyBUF_SIMPLE) < 0) {
        PyErr_SetString(PyExc_TypeError, "join_spans: starts and stops are lists or int64 arrays");
        return -1;
    }
    if (column->view.len % 8 != 0) {
        PyBuffer_Release(&column->view);
        column->view.obj = NULL;
        PyErr_SetString(PyExc_ValueError, "join_spans: an int64 array's size is a multiple of 8");
        return -1;
    }
    column->count = column->view.len / 8;
    return 0;
}

static Py_ssize_t int_column_get(const int_column_t *column, Py_ssize_t i) {
    if (column->list != NULL) return PyLong_AsSsize_t(PyList_GET_ITEM(column->list, i));
    int64_t value;
    memcpy(&value, (const char *)column->view.buf + 8 * i, 8);
    return (Py_ssize_t)value;
}

static void int_column_close(int_column_t *column) {
    if (column->view.obj != NULL) PyBuffer_Release(&column->view);
}

static PyObject *join_spans(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "join_spans takes 4 arguments");
        return NULL;
    }
    PyObject *buffers = args[0], *separator = args[3];
    if (!PyList_Check(buffers) || !PyBytes_Check(separator)) {
        PyErr_SetString(PyExc_TypeError, "join_spans: a list of buffers and a bytes separator");
        return NULL;
    }
    int_column_t starts, stops;
    if (int_column_open(&starts, args[1]) < 0) return NULL;
    if (int_column_open(&stops, args[2]) < 0) {
        int_column_close(&starts);
        return NULL;
    }
    PyObject *joined = NULL;
    Py_ssize_t count = PyList_GET_SIZE(buffers), sep_n = PyBytes_GET_SIZE(separator);
    if (starts.count != count || stops.count != count) {
        PyErr_SetString(PyExc_ValueError, "join_spans: lists of different lengths");
        goto done;
    }
    Py_ssize_t total = count > 0 ? sep_n * (count - 1) : 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *buffer = PyList_GET_ITEM(buffers, i);
        if (!PyBytes_Check(buffer)) {
            PyErr_SetString(PyExc_TypeError, "join_spans: buffers must be bytes");
            goto done;
        }
        Py_ssize_t start = int_column_get(&starts, i), stop = int_column_get(&stops, i);
        if ((start == -1 || stop == -1) && PyErr_Occurred()) goto done;
        if (start < 0 || start > stop || stop > PyBytes_GET_SIZE(buffer)) {
            PyErr_SetString(PyExc_ValueError, "join_spans: a span outside its buffer");
            goto done;
        }
        if (stop - start > PY_SSIZE_T_MAX - total) {
            PyErr_SetString(PyExc_OverflowError, "join_spans: too large");
            goto done;
        }
        total += stop - start;
    }
    joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined == NULL) goto done;
    char *out = PyBytes_AS_STRING(joined);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *buffer = PyList_GET_ITEM(buffers, i);
        Py_ssize_t start = int_column_get(&starts, i), stop = int_column_get(&stops, i);
        if (i > 0) {
            memcpy(out, PyBytes_AS_STRING(separator), (size_t)sep_n);
            out += sep_n;
        }
        memcpy(out, PyBytes_AS_STRING(buffer) + start, (size_t)(stop - start));
        out += stop - start;
    }
done:
    int_column_close(&starts);
    int_column_close(&stops);
    return joined;
}

PyDoc_STRVAR(stamp_bounds_doc,
"stamp_bounds(stamps, /)\n--\n\n"
"(earliest, latest) of the 24-byte ts values laid end to end in `stamps` (bytes-like, at\n"
"least one): fixed-width RFC 3339 UTC times order as their bytes do. ValueError otherwise.");

static PyObject *stamp_bounds(PyObject *module, PyObject *arg) {
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL;
    if (view.len == 0 || view.len % TS_BYTES != 0) {
        PyErr_SetString(PyExc_ValueError, "stamp_bounds: one or more 24-byte ts values");
    } else {
        const char *data = view.buf, *low = data, *high = data;
        for (const char *p = data + TS_BYTES; p < data + view.len; p += TS_BYTES) {
            if (memcmp(p, low, TS_BYTES) < 0) low = p;
            if (memcmp(p, high, TS_BYTES) > 0) high = p;
        }
        result = Py_BuildValue("(y#y#)", low, (Py_ssize_t)TS_BYTES, high, (Py_ssize_t)TS_BYTES);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_records", (PyCFunction)(void (*)(void))scan_records, METH_FASTCALL, scan_records_doc},
    {"scan_spool_run", (PyCFunction)(void (*)(void))scan_spool_run, METH_FASTCALL,
     scan_spool_run_doc},
    {"join_spans", (PyCFunction)(void (*)(void))join_spans, METH_FASTCALL, join_spans_doc},
    {"stamp_bounds", stamp_bounds, METH_O, stamp_bounds_doc},
    {"merkle_root", merkle_root, METH_O, merkle_root_doc},
    {"leaf_hashes", leaf_hashes, METH_O, leaf_hashes_doc},
    {"set_sha256_lanes", set_sha256_lanes, METH_O, set_sha256_lanes_doc},
    {"set_sha256_ni", set_sha256_ni, METH_O, set_sha256_ni_doc},
    {"set_sha256_ni_pairs", set_sha256_ni_pairs, METH_O, set_sha256_ni_pairs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "provenance._fastrecords",
    "Compiled check of canonical records (see provenance/fastrecords.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

static int intern_all(PyObject **out, const char *const *names, int count) {
    for (int i = 0; i < count; i++) {
        out[i] = PyUnicode_InternFromString(names[i]);
        if (out[i] == NULL) return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__fastrecords(void) {
    init_classes();
    use_lanes = sha256_lanes_pay();
    use_ni = sha256_ni_available();
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
    sha256_md = EVP_sha256();
#endif
    sha256_ctx = EVP_MD_CTX_new();
    if (sha256_md == NULL || sha256_ctx == NULL) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL's SHA-256 is not available");
        return NULL;
    }
    if (intern_all(cache_names, CACHES, N_CACHES) < 0 ||
        intern_all(tier_names, TIERS, N_TIERS) < 0 || intern_all(use_names, USES, N_USES) < 0)
        return NULL;
    return PyModule_Create(&module_def);
}
