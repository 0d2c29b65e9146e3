"""How an epoll worker opens its connections: paced, from its source addresses, each with its own timeout.

A mixin of :class:`~echoclients.load.engine.EpollWorker`, kept apart because
connecting is its own phase: it ends at the first barrier, before anything is
measured, and has its own concerns (the accept queue, ephemeral ports, TLS
handshakes, PROXY headers and banners) that the message loop does not share.
"""

from __future__ import annotations

import errno
import select
import socket

from echoclients.load.connection import Connection, clock, error_kind
from echoclients.load.opening import CONNECTED, tls_calls

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
TICK_S = 0.02  # the housekeeping period, and the longest any poll of a worker blocks


class Connecting:
    """``connect_all`` and its steps; the worker provides ``conns``, ``epoll``, ``by_fd``, ``fail`` and the rest."""

    def connect_all(self) -> None:
        """Non-blocking connects at ``--connect-rate``, each ready within ``--connect-timeout`` or failed.

        Ready means connected and, with an :class:`~echoclients.load.opening.Opening`,
        through its TLS handshake, PROXY header and banner too. Paced, because
        thousands of SYNs at once overflow the server's accept queue and the
        dropped ones come back a whole second later (the SYN retransmission).
        """
        pending: dict[int, Connection] = {}
        waiting = iter(self.conns)
        left, opened, started = len(self.conns), 0, clock()
        interval = self.connect_interval_ns
        timeout = int(self.spec.connect_timeout * 1e9)
        next_sweep = started + int(TICK_S * 1e9)
        while left or pending:
            now = clock()
            while left and (not interval or started + opened * interval <= now):
                conn = next(waiting)
                left, opened = left - 1, opened + 1
                self.start_connect(conn, pending, self.sources[conn.index % len(self.sources)])
            wait = TICK_S if not left or not interval else min(TICK_S, max(0, started + opened * interval - now) / 1e9)
            for fd, _ in self.epoll.poll(wait):
                conn = pending.get(fd)
                if conn is not None and self.connect_event(conn, fd):  # else ready already: it waits
                    del pending[fd]
            if now >= next_sweep:
                next_sweep = now + int(TICK_S * 1e9)
                for fd, conn in list(pending.items()):
                    if now - conn.connect_started > timeout:
                        del pending[fd]
                        self.fail(conn, "timeout")
                self.report_connected(len(self.by_fd) - len(pending))
        self.report_connected(len(self.by_fd))
        if self.opening is not None:
            for fd in self.by_fd:
                self.epoll.modify(fd, EPOLLIN)

    def start_connect(self, conn: Connection, pending: dict, source: str | None) -> None:
        code = conn.open(self.family, self.sockaddr, source)
        if code not in (0, errno.EINPROGRESS):
            self.fail(conn, error_kind(code))
            return
        fd = conn.sock.fileno()
        self.by_fd[fd] = conn
        self.epoll.register(fd, EPOLLOUT)
        pending[fd] = conn

    def connect_event(self, conn: Connection, fd: int) -> bool:
        """A pending connection's socket is writable (or failed): True once it is ready or dropped."""
        if conn.opening is None:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self.fail(conn, error_kind(code))
                return True
            if self.opening is None:
                self.connect_latency.record(clock() - conn.connect_started)
                self.epoll.modify(fd, EPOLLIN)  # nothing arrives before the first message
                return True
            conn.opening = self.opening.steps(conn)
        return self.take_steps(conn, fd)

    def report_connected(self, ready: int) -> None:
        """While connecting, the progress slot counts connections up, as negative numbers (progress.py)."""
        if self.progress is not None:
            self.progress[self.slot] = -ready

    def take_steps(self, conn: Connection, fd: int) -> bool:
        """Advance ``conn`` through its opening until it must wait; True once it is done (or failed)."""
        try:
            for wait in conn.opening:
                if wait == CONNECTED:
                    self.connect_latency.record(clock() - conn.connect_started)
                else:
                    self.epoll.modify(fd, wait)
                    return False
        except OSError as exc:
            self.fail(conn, error_kind(exc))
            return True
        conn.opening = None
        if self.spec.tls:
            conn.recv, conn.send = tls_calls(conn.sock)
        # Quiet until every connection is ready (a TLS 1.3 session ticket would wake it in vain).
        self.epoll.modify(fd, 0)
        return True
