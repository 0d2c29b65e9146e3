"""The accept loop and shutdown sequence shared by the blocking backends.

Subclasses say only how a connection is run (:meth:`BlockingBackend.dispatch`)
and, for gevent, how to wait and sleep cooperatively. Everything else is here
once: waiting on the listener *and* a wake-up socket so that :meth:`stop` can
interrupt the wait from a signal handler or another thread, the connection
limit, backing off when the process runs out of file descriptors, and the
graceful drain.
"""

from __future__ import annotations

import logging
import select
import signal
import socket
import time
from abc import abstractmethod
from collections.abc import Callable
from typing import Any

from echoserver.backends.base import Backend
from echoserver.backends.state import ServerState, poll_socket
from echoserver.backends.stream import BlockingConnection
from echoserver.config import ServerConfig
from echoserver.observability.stats import Stats

log = logging.getLogger("echoserver")


class BlockingBackend(Backend):
    """Accepts on a non-blocking listener; one blocking :class:`BlockingConnection` per client."""

    #: How long to wait for readiness; short only where a subclass must poll (fork reaps children).
    poll_interval: float | None = None

    def __init__(self, config: ServerConfig, stats: Stats | None = None) -> None:
        super().__init__(config, stats)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.listeners: list[socket.socket] = []

    def new_state(self, stats: Stats) -> ServerState:
        return ServerState(
            self.name,
            self.config,
            stats,
            self.tls,
            self.banner,
            sleep=self.sleep,
            wait_socket=self.wait_socket,
            on_closed=self._connection_ended,
        )

    @property
    def connections(self) -> dict:
        """The connections being served (read-only use: the state owns the set)."""
        return self.state.connections

    # -- what subclasses change -------------------------------------------------

    @abstractmethod
    def dispatch(self, connection: BlockingConnection) -> None:
        """Hand an accepted connection to whoever will run it."""

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait_readable(self, socks: list, timeout: float | None) -> list:
        return select.select(socks, [], [], timeout)[0]

    def wait_socket(self, sock: Any, writable: bool, timeout: float) -> bool:
        """Wait until one connection's socket is readable (or writable); False on timeout."""
        return poll_socket(sock, writable, timeout)

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        # A signal may land on any thread (a connection's, a pool worker); only the
        # main thread runs Python handlers, and only once its select() returns. The
        # wake-up fd makes the C-level handler write to our wake socket, so it does.
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)

    def on_wake(self) -> None:
        """Called whenever the accept loop wakes up (fork reaps children here)."""

    def has_capacity(self) -> bool:
        limit = self.config.max_connections
        return not limit or self.active < limit

    @property
    def active(self) -> int:
        return len(self.connections)

    # -- the loop ---------------------------------------------------------------

    def run(self, listeners: list[socket.socket], ready: Callable[[], None], *, handle_signals: bool = False) -> None:
        self.listeners = listeners
        for listener in listeners:
            listener.setblocking(False)
        if handle_signals:
            self.install_signal_handlers()
        ready()
        try:
            self._accept_until_stopped(listeners)
        finally:
            for listener in listeners:
                listener.close()
            self.drain()
            if handle_signals:
                signal.set_wakeup_fd(-1)  # the wake socket closes next
            self._wake_r.close()
            self._wake_w.close()

    def _accept_until_stopped(self, listeners: list[socket.socket]) -> None:
        backoff = 0.0
        while not self.stopping:
            watching = [self._wake_r]
            if self.has_capacity() and not backoff:
                watching.extend(listeners)
            readable = self.wait_readable(watching, backoff or self.poll_interval)
            backoff = 0.0
            if self._wake_r in readable:
                self._clear_wake()
            self.on_wake()
            for listener in readable:
                if listener is self._wake_r or self.stopping or not self.has_capacity():
                    continue
                try:
                    sock, peer = listener.accept()
                except BlockingIOError:
                    continue  # another process took it (several workers on one socket)
                except OSError as exc:
                    backoff = self.accept_failed(exc)
                    continue
                self.accept_succeeded()
                if sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does
                connection = BlockingConnection(sock, self.state, peer)
                self.state.opened(connection)
                self.dispatch(connection)

    def serve(self, connection: BlockingConnection) -> None:
        """Run one connection to its end; whoever runs connections calls this (it never raises)."""
        try:
            if self.stopping:
                connection.drain()
            connection.run()
        finally:
            self.state.closed(connection)

    def _connection_ended(self) -> None:
        if self.config.max_connections or self.stopping:
            self.wake()

    def wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # buffer full (already awake) or closed (already stopped)

    def _clear_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    # -- graceful shutdown ------------------------------------------------------

    def drain(self) -> None:
        """Let connected clients finish within ``--grace``, then cut whatever remains."""
        deadline = time.monotonic() + self.config.grace
        for connection in self._snapshot():
            connection.drain()
        self.wait_until_idle(deadline)
        if self.active:
            log.warning("grace period over: closing %d connection(s)", self.active)
            for connection in self._snapshot():
                connection.abort()
            self.wait_until_idle(time.monotonic() + 2.0, forced=True)

    def wait_until_idle(self, deadline: float, forced: bool = False) -> None:
        while self.active and time.monotonic() < deadline and (forced or not self.forcing):
            self.sleep(0.02)

    def _snapshot(self) -> list[BlockingConnection]:
        return self.state.live()
