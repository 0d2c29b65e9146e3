"""The accept loop, idle sweeper and drain of the event-loop backends.

``asyncio`` and ``uvloop`` differ only in :meth:`EventLoopBackend.new_event_loop`;
both serve connections with :class:`~echoserver.backends.protocol.EchoProtocol`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from echoserver.net.tls import HANDSHAKE_TIMEOUT
from echoserver.backends.base import SHUTDOWN_SIGNALS, Backend
from echoserver.backends.protocol import EchoProtocol

log = logging.getLogger("echoserver.connection")


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
        # A dict used as a set (values unused): at thousands of connections a set's table
        # costs up to ~105 bytes an entry, a dict's ~30 (see Stats._live).
        self.connections: dict[EchoProtocol, None] = {}
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
                if self.tls is None:
                    await self.loop.connect_accepted_socket(factory, sock)
                else:  # the handshake runs in the background: it must not hold up the accept loop
                    self.loop.create_task(self._handshake(factory, sock))
            except OSError:
                sock.close()
                self.connection_closed()

    async def _handshake(self, factory, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(factory, sock, ssl=self.tls,
                                                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            log.debug("TLS handshake failed: %s", exc)
            self.stats.error("tls")
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
                if protocol.bytes_in != protocol.seen_bytes_in or protocol.worker is not None:
                    protocol.seen_bytes_in = protocol.bytes_in
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
