/*
 * echo-load's closed loop, compiled: the per-message steps of
 * echoclients/load/closedloop.py (read a reply, compare it with the expected
 * stream, record its latency, send the next message) without a Python call
 * per step, and without the GIL, so that the worker threads of one echo-load
 * process run side by side.
 *
 * Why it exists: callgrind counted 10,318 instructions per message for the
 * Python loop against 1,728 for bench/c/epoll_client.c; the goal is a Python
 * load generator within 0.9x of a C one on one core. It is optional: when it
 * was not built (no compiler), the Python loop runs instead and the result says
 * so ("hot_loop").
 *
 * It handles only the common case, one message in flight on a plain TCP or
 * unix connection, with each reply read whole and correct, and the next
 * message accepted whole by the kernel. Everything else (a short or wrong read,
 * an error, a partial send, EPOLLOUT/EPOLLHUP) is handed back to Python in the
 * order it happened, with the bytes already read, and Python's general path
 * deals with it exactly as it would have without this module.
 *
 * The connections' state is a flat int64 table owned by Python (one row per
 * connection, columns as in COLUMNS below); a row whose FAST column is 1 is
 * this loop's to advance. Python copies a row into its Connection object when
 * it needs it (a deferred event, the timeout sweep, the window's edges).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

/* Columns of a row: the Python side reads them from COLUMNS, in this order. */
enum { C_FD, C_RPOS, C_SPOS, C_HIGH, C_PERIOD, C_SENT_AT, C_MESSAGES, C_STREAM, C_FAST, STRIDE };

/* What a deferred event asks of Python (DEFER_* in closedloop.py). */
enum { D_EVENT, D_READ, D_SENT, D_RECV_ERROR, D_SEND_ERROR };

typedef struct {
    int kind;
    int fd;
    long long value; /* the epoll mask, bytes sent, errno, or the read's length */
    long long now;   /* the clock when the read completed (D_READ) */
    char *data;      /* D_READ: a copy of what was read */
} deferred_t;

static inline long long clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.monotonic_ns() reads the same clock */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static PyObject *build_result(long long completed, Py_ssize_t nlat, long long now, deferred_t *list, Py_ssize_t n) {
    PyObject *events = PyList_New(n);
    if (events == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = list[i].kind == D_READ ? PyBytes_FromStringAndSize(list[i].data, (Py_ssize_t)list[i].value)
                                                 : PyLong_FromLongLong(list[i].value);
        PyObject *item = value ? Py_BuildValue("(iiNL)", list[i].kind, list[i].fd, value, list[i].now) : NULL;
        if (item == NULL) {
            Py_DECREF(events);
            return NULL;
        }
        PyList_SET_ITEM(events, i, item);
    }
    return Py_BuildValue("(LnLN)", completed, nlat, now, events);
}

PyDoc_STRVAR(closed_loop_doc,
             "closed_loop(epfd, table, streams, latencies, size, deadline_ns, limit)\n"
             "-> (completed, latencies_written, now_ns, deferred)\n\n"
             "Drive the FAST rows of `table` (int64, STRIDE columns per connection) until the\n"
             "monotonic clock passes `deadline_ns`, `limit` replies complete, `latencies` (int64)\n"
             "is nearly full, or an event needs Python (then at the end of that epoll batch).\n"
             "`streams` is a sequence of (expected, sent) buffers, indexed by the STREAM column.\n"
             "`deferred` lists (kind, fd, value, now) in the order the events happened.");

static int row_fits(const int64_t *row, const Py_buffer *bufs, Py_ssize_t nbufs, Py_ssize_t size) {
    if (row[C_STREAM] < 0 || 2 * row[C_STREAM] + 1 >= nbufs || row[C_FD] < 0 || row[C_PERIOD] <= 0) return 0;
    const Py_buffer *expected = &bufs[2 * row[C_STREAM]], *sent = expected + 1;
    return row[C_RPOS] >= 0 && row[C_RPOS] < row[C_HIGH] && row[C_SPOS] >= 0 && row[C_SPOS] < row[C_HIGH] &&
           row[C_HIGH] + size <= expected->len && row[C_HIGH] + size <= sent->len;
}

static PyObject *closed_loop(PyObject *Py_UNUSED(module), PyObject *args) {
    int epfd;
    Py_buffer table, lat;
    PyObject *streams, *seq = NULL, *result = NULL;
    Py_ssize_t size, nbufs = 0, acquired = 0, ndeferred = 0, nlat = 0;
    long long deadline, limit, completed = 0, now = 0;
    Py_buffer *bufs = NULL;
    int *row_of = NULL, failed_alloc = 0, maxevents = 1;
    int64_t max_fd = -1;
    struct epoll_event *events = NULL;
    deferred_t *deferred = NULL;
    char *scratch = NULL;
    if (!PyArg_ParseTuple(args, "iw*Ow*nLL", &epfd, &table, &streams, &lat, &size, &deadline, &limit)) return NULL;

    if (table.len % (Py_ssize_t)(STRIDE * sizeof(int64_t)) || table.itemsize != 8 || lat.itemsize != 8 || size <= 0) {
        PyErr_SetString(PyExc_ValueError, "table and latencies must be int64 arrays, size positive");
        goto done;
    }
    seq = PySequence_Fast(streams, "streams must be a sequence of (expected, sent) pairs");
    if (seq == NULL) goto done;
    nbufs = PySequence_Fast_GET_SIZE(seq) * 2;
    bufs = PyMem_Calloc((size_t)(nbufs ? nbufs : 1), sizeof(Py_buffer));
    if (bufs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nbufs / 2; i++) {
        PyObject *expected, *sent;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OO", &expected, &sent)) goto done;
        if (PyObject_GetBuffer(expected, &bufs[acquired], PyBUF_SIMPLE) < 0) goto done;
        acquired++;
        if (PyObject_GetBuffer(sent, &bufs[acquired], PyBUF_SIMPLE) < 0) goto done;
        acquired++;
    }

    int64_t *rows = (int64_t *)table.buf, *latencies = (int64_t *)lat.buf;
    Py_ssize_t nrows = table.len / (Py_ssize_t)(STRIDE * sizeof(int64_t)), lat_cap = lat.len / 8;
    for (Py_ssize_t r = 0; r < nrows; r++) {
        const int64_t *row = rows + r * STRIDE;
        if (!row[C_FAST]) continue;
        if (!row_fits(row, bufs, nbufs, size)) {
            PyErr_Format(PyExc_ValueError, "row %zd does not fit its stream", r);
            goto done;
        }
        if (row[C_FD] > max_fd) max_fd = row[C_FD];
    }
    /* Which row an epoll event's fd belongs to; -1: not a fast row (Python's). */
    row_of = PyMem_Malloc(sizeof(int) * (size_t)(max_fd + 2));
    maxevents = (int)(nrows < 1 ? 1 : nrows > 4096 ? 4096 : nrows);
    events = PyMem_Malloc(sizeof(struct epoll_event) * (size_t)maxevents);
    deferred = PyMem_Calloc((size_t)maxevents, sizeof(deferred_t));
    scratch = PyMem_Malloc((size_t)size);
    if (!row_of || !events || !deferred || !scratch) {
        PyErr_NoMemory();
        goto done;
    }
    for (int64_t fd = 0; fd <= max_fd; fd++) row_of[fd] = -1;
    for (Py_ssize_t r = 0; r < nrows; r++)
        if (rows[r * STRIDE + C_FAST]) row_of[rows[r * STRIDE + C_FD]] = (int)r;

    Py_BEGIN_ALLOW_THREADS;
    now = clock_ns();
    /* One batch more only while it cannot overflow the latencies nor the deferred list. */
    while (now < deadline && completed < limit && ndeferred == 0 && lat_cap - nlat >= maxevents) {
        int timeout = (int)((deadline - now + 999999) / 1000000);
        int n = epoll_wait(epfd, events, maxevents, timeout);
        now = clock_ns();
        if (n < 0) {
            if (errno == EINTR) continue;
            break; /* Python's own poll will raise it */
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t mask = events[i].events;
            int r = fd >= 0 && fd <= max_fd ? row_of[fd] : -1;
            int64_t *row = r >= 0 ? rows + (Py_ssize_t)r * STRIDE : NULL;
            if (row == NULL || row[C_FAST] != 1 || mask != EPOLLIN) {
                if (row != NULL && row[C_FAST] == 1) row[C_FAST] = 2; /* Python takes the row over */
                deferred[ndeferred++] = (deferred_t){D_EVENT, fd, mask, now, NULL};
                continue;
            }
            ssize_t got = recv(fd, scratch, (size_t)size, 0);
            if (got < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                row[C_FAST] = 2;
                deferred[ndeferred++] = (deferred_t){D_RECV_ERROR, fd, errno, now, NULL};
                continue;
            }
            now = clock_ns();
            const char *expected = bufs[2 * row[C_STREAM]].buf;
            if (got != size || memcmp(expected + row[C_RPOS], scratch, (size_t)size) != 0) {
                char *copy = got ? malloc((size_t)got) : NULL;
                if (got && copy == NULL) {
                    failed_alloc = 1;
                    break;
                }
                if (got) memcpy(copy, scratch, (size_t)got);
                row[C_FAST] = 2;
                deferred[ndeferred++] = (deferred_t){D_READ, fd, got, now, copy};
                continue;
            }
            int64_t rpos = row[C_RPOS] + size;
            row[C_RPOS] = rpos < row[C_HIGH] ? rpos : rpos - row[C_PERIOD];
            row[C_MESSAGES]++;
            completed++;
            latencies[nlat++] = now - row[C_SENT_AT];
            row[C_SENT_AT] = now;
            const char *out = bufs[2 * row[C_STREAM] + 1].buf;
            ssize_t sent = send(fd, out + row[C_SPOS], (size_t)size, MSG_NOSIGNAL);
            if (sent == size) {
                int64_t spos = row[C_SPOS] + size;
                row[C_SPOS] = spos < row[C_HIGH] ? spos : spos - row[C_PERIOD];
                continue;
            }
            row[C_FAST] = 2;
            if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                deferred[ndeferred++] = (deferred_t){D_SEND_ERROR, fd, errno, now, NULL};
            else
                deferred[ndeferred++] = (deferred_t){D_SENT, fd, sent < 0 ? 0 : sent, now, NULL};
        }
        if (failed_alloc) break;
    }
    Py_END_ALLOW_THREADS;
    if (failed_alloc)
        PyErr_NoMemory();
    else
        result = build_result(completed, nlat, now, deferred, ndeferred);

done:
    for (Py_ssize_t i = 0; deferred && i < ndeferred; i++) free(deferred[i].data);
    for (Py_ssize_t i = 0; i < acquired; i++) PyBuffer_Release(&bufs[i]);
    Py_XDECREF(seq);
    PyMem_Free(bufs);
    PyMem_Free(row_of);
    PyMem_Free(events);
    PyMem_Free(deferred);
    PyMem_Free(scratch);
    PyBuffer_Release(&table);
    PyBuffer_Release(&lat);
    return result;
}

static PyMethodDef methods[] = {
    {"closed_loop", closed_loop, METH_VARARGS, closed_loop_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *module) {
    static const char *names[] = {"fd", "rpos", "spos", "high", "period", "sent_at", "messages", "stream", "fast"};
    PyObject *columns = PyTuple_New(STRIDE);
    if (columns == NULL) return -1;
    for (int i = 0; i < STRIDE; i++) {
        PyObject *name = PyUnicode_FromString(names[i]);
        if (name == NULL) {
            Py_DECREF(columns);
            return -1;
        }
        PyTuple_SET_ITEM(columns, i, name);
    }
    if (PyModule_AddObject(module, "COLUMNS", columns) < 0) {
        Py_DECREF(columns);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED}, /* touches no shared Python state without a lock it holds */
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_hotloop",
    .m_doc = "echo-load's compiled closed loop (see the comment atop _hotloop.c).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC PyInit__hotloop(void) { return PyModuleDef_Init(&module_def); }
