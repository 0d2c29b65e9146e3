"""The one ``asyncio.Protocol`` of the event-loop backends, and their accept loop.

``asyncio`` and ``uvloop`` differ only in :meth:`EventLoopBackend.new_event_loop`.
The protocol works at the callback level rather than with streams: no task and
no future per connection on the fast path, which is where most of an asyncio
server's overhead would otherwise go.

Flow control: when the transport's write buffer passes ``--write-buffer-limit``
the loop calls :meth:`EchoProtocol.pause_writing` and the protocol stops reading
from that client until the buffer drains, so a client that never reads cannot
make the server buffer without bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Callable

from ..handlers import make_handler
from .base import SHUTDOWN_SIGNALS, Backend
from .connection import peer_error_kind, shutdown_socket

log = logging.getLogger("echoserver.connection")


class EchoProtocol(asyncio.Protocol):
    def __init__(self, server: "EventLoopBackend") -> None:
        self.server = server
        self.handler = make_handler(server.config)
        self.delay = server.config.io_delay_s
        self.limit = server.config.write_buffer_limit
        self.transport: asyncio.Transport | None = None
        self.counters = None
        self.activity = 0  # bumped per read; the idle sweeper compares it between sweeps
        self.seen_activity = -1
        self.quiet_since = 0.0
        self.idle_closed = False
        # --io-delay only: chunks waiting for the delayed worker, in order.
        self.backlog: collections.deque = collections.deque()
        self.backlog_bytes = 0
        self.worker: asyncio.Task | None = None
        self.eof = False
        self.writing_paused = False
        self.reading_paused = False

    # -- transport callbacks ----------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=self.limit)
        self.counters = self.server.stats.opened()
        self.server.connections.add(self)
        if self.server.stopping:
            self.drain()

    def data_received(self, data: bytes) -> None:
        self.activity += 1
        self.counters.bytes_in += len(data)
        if self.delay:
            self.backlog.append(data)
            self.backlog_bytes += len(data)
            self._update_reading()
            if self.worker is None:
                self.worker = self.server.loop.create_task(self._work_with_delay())
            return
        self._reply(*self.handler.feed(data))

    def _reply(self, reply: bytes, units: int) -> None:
        self.counters.messages += units
        if reply:
            self.transport.write(reply)
            self.counters.bytes_out += len(reply)
        if self.handler.closing:
            self.transport.close()

    def eof_received(self) -> bool:
        self.eof = True
        if self.worker is None:
            self._finish()
        return True  # keep the transport: _finish closes it once every reply is queued

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        error = None
        if exc is not None:
            error = peer_error_kind(exc) or "server"
            (log.debug if error != "server" else log.warning)("connection %s: %s", self.peer, exc)
        if self.worker is not None:
            self.worker.cancel()
        self.server.connections.discard(self)
        self.server.stats.closed_connection(self.counters, idle=self.idle_closed, error=error)
        self.server.connection_closed()

    # -- the rest ---------------------------------------------------------------

    @property
    def peer(self) -> object:
        return self.transport.get_extra_info("peername") if self.transport else None

    def _update_reading(self) -> None:
        should_pause = self.writing_paused or self.backlog_bytes > self.limit
        if should_pause != self.reading_paused and not self.transport.is_closing():
            self.reading_paused = should_pause
            (self.transport.pause_reading if should_pause else self.transport.resume_reading)()

    async def _work_with_delay(self) -> None:
        """Replies in order, each after ``--io-delay``: a sleep that yields to the loop."""
        try:
            while self.backlog:
                data = self.backlog.popleft()
                self.backlog_bytes -= len(data)
                self._update_reading()
                reply, units = self.handler.feed(data)
                if units:
                    await asyncio.sleep(self.delay * units)
                if self.transport.is_closing():
                    return
                self._reply(reply, units)
        finally:
            self.worker = None
        if self.eof:
            self._finish()

    def _finish(self) -> None:
        tail = self.handler.eof()
        if tail:
            self.transport.write(tail)
            self.counters.bytes_out += len(tail)
        self.transport.close()  # sends what is buffered, then FIN

    def drain(self) -> None:
        """Stop reading new data; what the kernel already holds is echoed, then EOF closes us."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return
        shutdown_socket(sock, socket.SHUT_RD)
        if self.reading_paused:
            return  # a stalled reader gets the grace period, then abort()
        if self.worker is None and not self.backlog and not self.transport.get_write_buffer_size():
            self.eof_received()


class EventLoopBackend(Backend):
    """Accepts with ``loop.sock_accept`` and hands sockets to :class:`EchoProtocol`.

    Owning the accept loop (rather than ``loop.create_server``) gives the event
    loop backends the same connection limit and descriptor back-off as the
    blocking ones, on asyncio and uvloop alike.
    """

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def run(self, listeners: list[socket.socket], ready: Callable[[], None], *,
            handle_signals: bool = False) -> None:
        self.connections: set[EchoProtocol] = set()
        loop = self.new_event_loop()
        try:
            loop.run_until_complete(self._main(listeners, ready, handle_signals))
        finally:
            loop.close()

    async def _main(self, listeners: list[socket.socket], ready: Callable[[], None], handle_signals: bool) -> None:
        self.loop = asyncio.get_running_loop()
        # One permit per connection the server may serve at once (--max-connections):
        # the accept loop takes one before accepting, connection_lost gives it back.
        limit = self.config.max_connections
        self._slots = asyncio.Semaphore(limit) if limit else None
        self._stopped = asyncio.Event()
        if self.stopping:
            self._stopped.set()
        if handle_signals:
            for signum in SHUTDOWN_SIGNALS:
                self.loop.add_signal_handler(signum, self.on_shutdown_signal, signum)
        accepting = []
        for listener in listeners:
            listener.setblocking(False)
            accepting.append(self.loop.create_task(self._accept(listener)))
        sweeper = self.loop.create_task(self._sweep_idle()) if self.config.idle_timeout else None
        ready()
        await self._stopped.wait()
        for task in accepting:
            task.cancel()
        await asyncio.gather(*accepting, return_exceptions=True)
        for listener in listeners:
            listener.close()
        await self._drain()
        if sweeper:
            sweeper.cancel()

    async def _accept(self, listener: socket.socket) -> None:
        factory = lambda: EchoProtocol(self)  # noqa: E731
        while True:
            if self._slots:
                await self._slots.acquire()
            try:
                sock, _ = await self.loop.sock_accept(listener)
            except OSError as exc:
                self.connection_closed()
                await asyncio.sleep(self.accept_failed(exc))
                continue
            self.accept_succeeded()
            try:
                await self.loop.connect_accepted_socket(factory, sock)
            except OSError:
                sock.close()
                self.connection_closed()

    def connection_closed(self) -> None:
        if self._slots:
            self._slots.release()

    async def _sweep_idle(self) -> None:
        timeout = self.config.idle_timeout
        period = min(timeout / 4, 1.0)
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for protocol in list(self.connections):
                if protocol.activity != protocol.seen_activity or protocol.worker is not None:
                    protocol.seen_activity = protocol.activity
                    protocol.quiet_since = now
                elif now - protocol.quiet_since >= timeout:
                    log.debug("closing %s: idle for %ss", protocol.peer, timeout)
                    protocol.idle_closed = True
                    transport = protocol.transport
                    # close() would wait for a stalled reader to take what is buffered.
                    (transport.abort if transport.get_write_buffer_size() else transport.close)()

    def wake(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopped.set)

    async def _drain(self) -> None:
        deadline = self.loop.time() + self.config.grace
        for protocol in list(self.connections):
            protocol.drain()
        while self.connections and self.loop.time() < deadline and not self.forcing:
            await asyncio.sleep(0.02)
        if self.connections:
            log.warning("grace period over: closing %d connection(s)", len(self.connections))
            for protocol in list(self.connections):
                protocol.transport.abort()
            while self.connections:
                await asyncio.sleep(0.01)
