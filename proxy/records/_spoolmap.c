/* The serving process's spool writer: each record framed straight into a memory-mapped segment.

A store into a MAP_SHARED mapping of a file is in the kernel's page cache as soon as it is made:
it survives SIGKILL of the process exactly as a returned write(2) does, without the system call.
So a record is in the spool the moment `append` returns, and its response can go out at once:
no holding responses back until a per-iteration flush (proxy/cork.py), no write(2) per loop.

Frame layout (proxy/records/segments.py): [u32 BE length][u32 BE CRC-32 of (length || payload)]
[payload]. The payload is written first and the 8-byte header last, after a release fence: a
reader that meets a zero header at a frame boundary is looking at bytes not written yet, and one
that meets a whole header finds the payload it checks already there.

The Python side (proxy/records/spool.py, MappedSpoolWriter) owns the files: it preallocates each
segment (posix_fallocate, so a store into the mapping never meets a full disk: that would be
SIGBUS), maps it here, and is called back (`on_full`) when a frame does not fit below `limit`:
the segment's end, or the spool's byte budget. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "../../provenance/_crc32_clmul.h"

#define MAX_PAYLOAD_BYTES (1 << 20) /* segments.MAX_PAYLOAD_BYTES */
#define HEADER_BYTES 8
#define TS_BYTES 26 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" with its quotes */
#define MAX_TS_SECONDS 253402300800LL /* 10000-01-01: a record's year has four digits */
#define COUNTERS_MAX 64 /* "\n#served=N,dropped=M" with two u64 */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#define POPULATE_AHEAD (4 << 20) /* pages made ready this far past the written end */
#define POPULATE_STEP (256 << 10) /* at most this much per madvise: unmap never waits long */

/* The first store into each page of a fresh segment faults: the kernel allocates the page and
   zeroes it, and on a fault its readahead does that for megabytes at once. Measured: a stall
   of 2-20 ms every ~8 MB of records on the thread that stores. A thread of its own makes the
   pages ahead of the written end ready (MADV_POPULATE_WRITE) so the event loop's stores meet
   pages already there. It touches no Python object and never holds the GIL. */
typedef struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake, idle;
    char *base;           /* the mapping it may populate, or NULL */
    size_t capacity;
    size_t populated;     /* pages before this are ready */
    size_t wanted;        /* populate up to here */
    int busy, quit, broken;
} populator_t;

static size_t page_size = 4096; /* sysconf(_SC_PAGESIZE) at import */

static size_t page_floor(size_t offset) { return offset & ~(page_size - 1); }

/* Where the pages to make ready end: POPULATE_AHEAD past `offset`, rounded up to a page, but
   not past the mapping (whose last page madvise rounds the length up to, when `capacity` is
   not a whole number of pages). */
static size_t populate_end(size_t offset, size_t capacity) {
    size_t end = page_floor(offset + POPULATE_AHEAD + page_size - 1);
    return end < capacity ? end : capacity;
}

static void *populate_loop(void *arg) {
    populator_t *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->quit && (p->base == NULL || p->populated >= p->wanted || p->broken))
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->quit) break;
        char *base = p->base;
        /* madvise takes a page-aligned start (an unaligned one is EINVAL, which would stop
           the thread for good): populated and wanted are kept on page boundaries. */
        size_t start = p->populated, end = p->wanted;
        if (end - start > POPULATE_STEP) end = start + POPULATE_STEP;
        p->busy = 1;
        pthread_mutex_unlock(&p->lock);
        int unsupported = madvise(base + start, end - start, MADV_POPULATE_WRITE) != 0 &&
                          errno == EINVAL;
        pthread_mutex_lock(&p->lock);
        p->busy = 0;
        /* An older kernel: stores fault in as before. Any other failure (no memory just now)
           leaves these pages to fault in; the next ones are tried. */
        if (unsupported) p->broken = 1;
        if (p->base == base) p->populated = end;
        pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static populator_t *populator_start(void) {
    populator_t *p = PyMem_RawCalloc(1, sizeof *p);
    if (p == NULL) return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    /* Signals are the main thread's (Python handles them there): the thread starts with every
       signal blocked, and this thread's mask is put back. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &previous);
    int created = pthread_create(&p->thread, NULL, populate_loop, p);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (created != 0) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->wake);
        pthread_cond_destroy(&p->idle);
        PyMem_RawFree(p);
        return NULL; /* no thread: stores fault in as before */
    }
    return p;
}

/* The populator lets go of the mapping (waiting out a madvise in progress) before it goes. */
static void populator_release(populator_t *p) {
    if (p == NULL) return;
    pthread_mutex_lock(&p->lock);
    p->base = NULL;
    while (p->busy) pthread_cond_wait(&p->idle, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

/* A new mapping, written from its start: the thread makes its first pages ready. */
static void populator_follow(populator_t *p, char *base, size_t capacity) {
    if (p == NULL) return;
    pthread_mutex_lock(&p->lock);
    p->base = base;
    p->capacity = capacity;
    p->populated = 0;
    p->wanted = populate_end(0, capacity);
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

static void populator_stop(populator_t *p) {
    if (p == NULL) return;
    pthread_mutex_lock(&p->lock);
    p->quit = 1;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(p->thread, NULL);
    Py_END_ALLOW_THREADS
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->idle);
    PyMem_RawFree(p);
}

typedef struct {
    PyObject_HEAD
    char *base;            /* the mapping, or NULL */
    Py_ssize_t capacity;   /* mapped bytes */
    Py_ssize_t offset;     /* where the next frame goes */
    Py_ssize_t limit;      /* frames end at most here (the segment's end or the spool's budget) */
    Py_ssize_t wanted;     /* the size of the last frame that did not fit */
    unsigned long long extra_served;  /* answers since the last frame that it did not carry */
    unsigned long long extra_dropped; /* of them, records refused for want of room */
    unsigned long long emitted, dropped, sampled_out;
    long long ts_ms;
    char ts[80]; /* TS_BYTES used; room for what snprintf could write in theory */
    PyObject *on_full;
    populator_t *populator;
    Py_ssize_t populate_at; /* past this offset, ask the populator for more */
} MappedSegment;

static void unmap(MappedSegment *self) {
    populator_release(self->populator);
    if (self->base != NULL) munmap(self->base, (size_t)self->capacity);
    self->base = NULL;
    self->capacity = self->offset = self->limit = 0;
}

/* Keep the populator POPULATE_AHEAD ahead; asked once per half of it, not per record. */
static void populate_ahead(MappedSegment *self) {
    populator_t *p = self->populator;
    if (p == NULL) return;
    size_t end = populate_end((size_t)self->offset, (size_t)self->capacity);
    pthread_mutex_lock(&p->lock);
    if (p->base == self->base && end > p->wanted) {
        p->wanted = end;
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    self->populate_at = self->offset + POPULATE_AHEAD / 2;
}

static int MappedSegment_init(MappedSegment *self, PyObject *args, PyObject *kwds) {
    static char *keywords[] = {"on_full", NULL};
    PyObject *on_full = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:MappedSegment", keywords, &on_full))
        return -1;
    if (on_full != Py_None && !PyCallable_Check(on_full)) {
        PyErr_SetString(PyExc_TypeError, "on_full must be callable or None");
        return -1;
    }
    Py_XSETREF(self->on_full, on_full == Py_None ? NULL : Py_NewRef(on_full));
    self->ts_ms = -1;
    return 0;
}

/* on_full is usually a bound method of the object that owns this segment: a cycle, which the
   garbage collector must be able to see and break. */
static int MappedSegment_traverse(MappedSegment *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_full);
    return 0;
}

static int MappedSegment_clear(MappedSegment *self) {
    Py_CLEAR(self->on_full);
    return 0;
}

static void MappedSegment_dealloc(MappedSegment *self) {
    PyObject_GC_UnTrack(self);
    unmap(self);
    populator_stop(self->populator);
    self->populator = NULL;
    MappedSegment_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *MappedSegment_map(MappedSegment *self, PyObject *args) {
    int fd;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "in:map", &fd, &size)) return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "map: need size > 0");
        return NULL;
    }
    void *base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) return PyErr_SetFromErrno(PyExc_OSError);
    /* No readahead: on a fault it zeroes a whole large folio (megabytes) while the store
       waits; page by page, a page costs what it costs and nobody waits for the rest. */
    (void)madvise(base, (size_t)size, MADV_RANDOM);
    unmap(self);
    self->base = base;
    self->capacity = self->limit = size;
    self->offset = 0;
    if (self->populator == NULL) self->populator = populator_start();
    populator_follow(self->populator, base, (size_t)size);
    self->populate_at = POPULATE_AHEAD / 2;
    Py_RETURN_NONE;
}

static PyObject *MappedSegment_unmap(MappedSegment *self, PyObject *Py_UNUSED(ignored)) {
    unmap(self);
    Py_RETURN_NONE;
}

static PyObject *MappedSegment_skip(MappedSegment *self, PyObject *Py_UNUSED(ignored)) {
    self->extra_served++;
    self->sampled_out++;
    Py_RETURN_NONE;
}

/* The record's `ts` for now_s, as RecordEncoder.timestamp_json formats it; 0, or -1 with an
   exception. Formatted once per millisecond. */
static int format_ts(MappedSegment *self, double now_s) {
    double scaled = now_s * 1000.0;
    if (!(now_s >= 0.0) || !(scaled < (double)MAX_TS_SECONDS * 1000.0)) {
        PyErr_SetString(PyExc_ValueError, "now_s must be a time from 1970 to 9999");
        return -1;
    }
    long long ms = (long long)scaled; /* int(now_s * 1000): truncation, as Python's int() */
    if (ms == self->ts_ms) return 0;
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&seconds, &tm) == NULL) {
        PyErr_SetString(PyExc_ValueError, "now_s is not a calendar time");
        return -1;
    }
    snprintf(self->ts, sizeof self->ts, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ms % 1000));
    self->ts_ms = ms;
    return 0;
}

typedef struct {
    const char *data;
    Py_ssize_t size;
} Part;

/* 1: the frame of `parts` (plus the counters line the pending answers need) is written;
   0: it does not fit below `limit` (self->wanted says how much it needs); -1: error. */
static int put_frame(MappedSegment *self, const Part *parts, int count) {
    char counters[COUNTERS_MAX];
    Py_ssize_t counters_size = 0;
    if (self->extra_served || self->extra_dropped) {
        counters_size = snprintf(counters, sizeof counters, "\n#served=%llu,dropped=%llu",
                                 self->extra_served + 1, self->extra_dropped);
    }
    Py_ssize_t payload = counters_size;
    for (int i = 0; i < count; i++) payload += parts[i].size;
    if (payload <= 0 || payload > MAX_PAYLOAD_BYTES) {
        PyErr_Format(PyExc_ValueError, "a record must be 1..%d bytes", MAX_PAYLOAD_BYTES);
        return -1;
    }
    Py_ssize_t frame = HEADER_BYTES + payload;
    if (self->base == NULL || frame > self->limit - self->offset) {
        self->wanted = frame;
        return 0;
    }
    unsigned char *at = (unsigned char *)self->base + self->offset;
    unsigned char *cursor = at + HEADER_BYTES;
    for (int i = 0; i < count; i++) {
        memcpy(cursor, parts[i].data, (size_t)parts[i].size);
        cursor += parts[i].size;
    }
    memcpy(cursor, counters, (size_t)counters_size);
    unsigned char header[HEADER_BYTES] = {
        (unsigned char)(payload >> 24), (unsigned char)(payload >> 16),
        (unsigned char)(payload >> 8), (unsigned char)payload, 0, 0, 0, 0};
    uint32_t crc = crc32_frame(crc32_frame(0, header, 4), at + HEADER_BYTES, (size_t)payload);
    header[4] = (unsigned char)(crc >> 24);
    header[5] = (unsigned char)(crc >> 16);
    header[6] = (unsigned char)(crc >> 8);
    header[7] = (unsigned char)crc;
    __atomic_thread_fence(__ATOMIC_RELEASE); /* the payload before the header that vouches */
    memcpy(at, header, HEADER_BYTES);
    self->offset += frame;
    self->emitted++;
    self->extra_served = self->extra_dropped = 0;
    if (self->offset > self->populate_at) populate_ahead(self);
    return 1;
}

/* put_frame, and when it does not fit, on_full(wanted) once: True means it made room (a new
   segment, space the sealer freed), so try again; else the record is refused and counted. */
static PyObject *append_parts(MappedSegment *self, const Part *parts, int count) {
    int put = put_frame(self, parts, count);
    if (put == 0 && self->on_full != NULL) {
        PyObject *callback = Py_NewRef(self->on_full); /* alive even if it replaces itself */
        PyObject *made_room = PyObject_CallFunction(callback, "n", self->wanted);
        Py_DECREF(callback);
        if (made_room == NULL) return NULL;
        int retry = PyObject_IsTrue(made_room);
        Py_DECREF(made_room);
        if (retry < 0) return NULL;
        if (retry) put = put_frame(self, parts, count);
    }
    if (put < 0) return NULL;
    if (put) Py_RETURN_TRUE;
    self->dropped++;
    self->extra_served++;
    self->extra_dropped++;
    Py_RETURN_FALSE;
}

static PyObject *MappedSegment_append(MappedSegment *self, PyObject *record) {
    if (!PyBytes_Check(record)) {
        PyErr_SetString(PyExc_TypeError, "append: record must be bytes");
        return NULL;
    }
    Part part = {PyBytes_AS_STRING(record), PyBytes_GET_SIZE(record)};
    return append_parts(self, &part, 1);
}

/* A plain hit's record from its template (RecordEncoder.hit_template): a + request id + b + ts
   + c, the bytes RecordEncoder.encode_hit makes. */
static PyObject *MappedSegment_append_hit(MappedSegment *self, PyObject *const *args,
                                          Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 3 ||
        !PyUnicode_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "append_hit(template: tuple[bytes, bytes, bytes], now_s: float, "
                        "request_id: str)");
        return NULL;
    }
    PyObject *a = PyTuple_GET_ITEM(args[0], 0), *b = PyTuple_GET_ITEM(args[0], 1),
             *c = PyTuple_GET_ITEM(args[0], 2);
    if (!PyBytes_Check(a) || !PyBytes_Check(b) || !PyBytes_Check(c)) {
        PyErr_SetString(PyExc_TypeError, "append_hit: the template's parts must be bytes");
        return NULL;
    }
    Py_ssize_t id_size;
    const char *id = PyUnicode_AsUTF8AndSize(args[2], &id_size);
    if (id == NULL) return NULL;
    for (Py_ssize_t i = 0; i < id_size; i++) { /* written as is: it must need no JSON escape */
        unsigned char ch = (unsigned char)id[i];
        if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\') {
            PyErr_SetString(PyExc_ValueError, "append_hit: the request id needs escaping");
            return NULL;
        }
    }
    double now_s = PyFloat_AsDouble(args[1]);
    if (now_s == -1.0 && PyErr_Occurred()) return NULL;
    if (format_ts(self, now_s) < 0) return NULL;
    Part parts[5] = {
        {PyBytes_AS_STRING(a), PyBytes_GET_SIZE(a)}, {id, id_size},
        {PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)}, {self->ts, TS_BYTES},
        {PyBytes_AS_STRING(c), PyBytes_GET_SIZE(c)}};
    return append_parts(self, parts, 5);
}

static PyObject *MappedSegment_get_limit(MappedSegment *self, void *Py_UNUSED(closure)) {
    return PyLong_FromSsize_t(self->limit);
}

static int MappedSegment_set_limit(MappedSegment *self, PyObject *value,
                                   void *Py_UNUSED(closure)) {
    Py_ssize_t limit = value == NULL ? -1 : PyLong_AsSsize_t(value);
    if (limit == -1 && PyErr_Occurred()) return -1;
    if (limit < self->offset || limit > self->capacity) {
        PyErr_SetString(PyExc_ValueError, "limit must lie between offset and capacity");
        return -1;
    }
    self->limit = limit;
    return 0;
}

static PyObject *MappedSegment_get_populated(MappedSegment *self, void *Py_UNUSED(closure)) {
    size_t populated = 0;
    populator_t *p = self->populator;
    if (p != NULL) {
        pthread_mutex_lock(&p->lock);
        if (p->base != NULL && p->base == self->base && !p->broken) populated = p->populated;
        pthread_mutex_unlock(&p->lock);
    }
    return PyLong_FromSize_t(populated);
}

static PyGetSetDef MappedSegment_getset[] = {
    {"populated", (getter)MappedSegment_get_populated, NULL,
     "how far into the mapping the helper thread has made pages ready (0: none, no helper, or "
     "a helper that stopped)",
     NULL},
    {"limit", (getter)MappedSegment_get_limit, (setter)MappedSegment_set_limit,
     "frames end at most here (offset <= limit <= capacity)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef MappedSegment_members[] = {
    {"capacity", T_PYSSIZET, offsetof(MappedSegment, capacity), READONLY, "mapped bytes"},
    {"offset", T_PYSSIZET, offsetof(MappedSegment, offset), READONLY, "the written end"},
    {"wanted", T_PYSSIZET, offsetof(MappedSegment, wanted), READONLY,
     "the size of the last frame that did not fit"},
    {"emitted", T_ULONGLONG, offsetof(MappedSegment, emitted), READONLY, "records written"},
    {"dropped", T_ULONGLONG, offsetof(MappedSegment, dropped), READONLY,
     "records refused for want of room"},
    {"sampled_out", T_ULONGLONG, offsetof(MappedSegment, sampled_out), READONLY,
     "answers left without a record by sampling (skip)"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef MappedSegment_methods[] = {
    {"map", (PyCFunction)MappedSegment_map, METH_VARARGS,
     "map(fd, size): map the file's first size bytes (read-write, shared), a new segment: "
     "the first frame goes at its start. Unmaps what was mapped before."},
    {"unmap", (PyCFunction)MappedSegment_unmap, METH_NOARGS, "unmap the segment"},
    {"append", (PyCFunction)MappedSegment_append, METH_O,
     "append(record: bytes) -> bool: the record's frame is in the segment (True), or the "
     "record was refused for want of room and counted (False)"},
    {"append_hit", (PyCFunction)(void (*)(void))MappedSegment_append_hit, METH_FASTCALL,
     "append_hit(template, now_s, request_id) -> bool: append a plain hit's record built from "
     "its template (RecordEncoder.hit_template)"},
    {"skip", (PyCFunction)MappedSegment_skip, METH_NOARGS,
     "count an answer left without a record by sampling; the next frame carries it"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MappedSegmentType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proxy.records._spoolmap.MappedSegment",
    .tp_basicsize = sizeof(MappedSegment),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)MappedSegment_traverse,
    .tp_clear = (inquiry)MappedSegment_clear,
    .tp_doc = "MappedSegment(on_full=None): frames records into a mapped spool segment",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)MappedSegment_init,
    .tp_dealloc = (destructor)MappedSegment_dealloc,
    .tp_methods = MappedSegment_methods,
    .tp_members = MappedSegment_members,
    .tp_getset = MappedSegment_getset,
};

static PyObject *frame_crc32(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer data;
    unsigned long value = 0;
    if (!PyArg_ParseTuple(args, "y*|k:frame_crc32", &data, &value)) return NULL;
    uint32_t crc = crc32_frame((uint32_t)value, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *set_crc32_clmul(PyObject *Py_UNUSED(module), PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    int was = crc32_clmul_available();
    crc32_clmul_usable = -1;
    if (on && !crc32_clmul_available()) {
        PyErr_SetString(PyExc_ValueError, "this CPU has no PCLMULQDQ and SSE4.1");
        return NULL;
    }
    crc32_clmul_usable = on;
#else
    int was = 0;
    if (on) {
        PyErr_SetString(PyExc_ValueError, "carry-less multiplication is not built here");
        return NULL;
    }
#endif
    return PyBool_FromLong(was);
}

static PyMethodDef spoolmap_functions[] = {
    {"frame_crc32", frame_crc32, METH_VARARGS,
     "frame_crc32(data, value=0) -> int: zlib's crc32(data, value), as frames are checksummed "
     "here (by carry-less multiplication where the CPU has it)"},
    {"set_crc32_clmul", set_crc32_clmul, METH_O,
     "set_crc32_clmul(on) -> bool: use carry-less multiplication (True) or zlib's tables; "
     "returns the previous setting. ValueError if the CPU cannot. For tests and benches."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef spoolmap_module = {
    PyModuleDef_HEAD_INIT, "proxy.records._spoolmap",
    "Records framed straight into a memory-mapped spool segment (proxy/records/spool.py).", -1,
    spoolmap_functions, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__spoolmap(void) {
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0 && (page & (page - 1)) == 0) page_size = (size_t)page;
    if (PyType_Ready(&MappedSegmentType) < 0) return NULL;
    PyObject *module = PyModule_Create(&spoolmap_module);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "MappedSegment", (PyObject *)&MappedSegmentType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddIntConstant(module, "POPULATE_AHEAD", POPULATE_AHEAD) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
