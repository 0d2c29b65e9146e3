"""``echo-load --reconnect``: a connection lost during the run is replaced, and the run goes on.

Without it, a server that resets connections (``--reset-probability``, a
rolling restart) ends the measurement as soon as the last connection is gone.
With it, every failure is still counted by kind (and the exit status is
still 1), but the worker opens a new connection in its place at the next
housekeeping tick, its stream started over, and keeps measuring.

The connect (and TLS handshake, PROXY header, banner) is made blocking, on the
load thread: it stalls that thread's other connections for as long (well
under a millisecond on loopback), and only when something was lost. A connect
that fails is counted and tried again at the next tick.
"""

from __future__ import annotations

import errno
import os
import select
import socket

from echoclients.load.connection import clock, error_kind
from echoclients.load.opening import tls_calls


def replace_lost(worker) -> None:
    """A new connection for each of ``worker.lost``; the ones that fail stay on the list."""
    lost, worker.lost = worker.lost, []
    spec = worker.spec
    for conn in lost:
        conn.rpos = conn.spos = conn.low
        conn.partial = conn.owed = 0
        conn.corrupt = conn.writing = False
        conn.sent_at.clear()
        started = clock()
        try:
            if conn.open(worker.family, worker.sockaddr) == errno.EINPROGRESS:
                select.select([], [conn.sock], [], spec.connect_timeout)
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            conn.sock.settimeout(spec.connect_timeout)
            for _ in worker.opening.steps(conn) if worker.opening else ():
                pass  # a blocking socket: the steps never wait
            conn.sock.setblocking(False)
        except OSError as exc:
            worker.fail(conn, error_kind(exc))  # back on the lost list, for the next tick
            continue
        worker.connect_latency.record(clock() - started)
        conn.recv, conn.send = tls_calls(conn.sock) if spec.tls else (conn.sock.recv, conn.sock.send)
        fd = conn.sock.fileno()
        worker.by_fd[fd] = conn
        worker.epoll.register(fd, select.EPOLLIN)
        worker.reconnects += 1
        if not worker.rate:
            worker.queue(conn, spec.pipeline, clock())
