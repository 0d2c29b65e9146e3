"""The accept loop, connection set-up, idle sweeper and drain of the event-loop backends.

``asyncio`` and ``uvloop`` differ only in :meth:`EventLoopBackend.new_event_loop`;
both serve connections with :class:`~echoserver.backends.protocol.EchoProtocol`,
which sees the server only through its :class:`~echoserver.backends.state.ServerState`.
Every task started here is cancelled and awaited before :meth:`EventLoopBackend.run` returns.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from echoserver.backends.base import SHUTDOWN_SIGNALS, Backend
from echoserver.backends.closing import (
    LINGER_BYTES,
    LINGER_SECONDS,
    REFUSALS_TO_LINGER,
    Refused,
    failure_kind,
    shutdown_socket,
)
from echoserver.backends.protocol import EchoProtocol
from echoserver.backends.state import ServerState
from echoserver.observability.stats import Stats
from echoserver.sansio.proxy_protocol import ProxyHeaderReader, ProxyProtocolError

log = logging.getLogger("echoserver.connection")

PEEK_SIZE = 4096  # a PROXY header is read in peeks of at most this many bytes


class EventLoopBackend(Backend):
    """Accepts with ``loop.sock_accept`` and hands sockets to :class:`EchoProtocol`.

    Owning the accept loop (rather than ``loop.create_server``) gives the event
    loop backends the same connection limit and descriptor back-off as the
    blocking ones, on asyncio and uvloop alike.
    """

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def new_state(self, stats: Stats) -> ServerState:
        return ServerState(self.name, self.config, stats, self.tls, self.banner, on_closed=self.connection_closed)

    @property
    def connections(self) -> dict:
        return self.state.connections

    def run(self, listeners: list[socket.socket], ready: Callable[[], None], *, handle_signals: bool = False) -> None:
        loop = self.new_event_loop()
        try:
            loop.run_until_complete(self._main(listeners, ready, handle_signals))
        finally:
            loop.close()

    async def _main(self, listeners: list[socket.socket], ready: Callable[[], None], handle_signals: bool) -> None:
        self.loop = self.state.loop = asyncio.get_running_loop()
        # One permit per connection the server may serve at once (--max-connections):
        # the accept loop takes one before accepting, connection_closed gives it back.
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
        await _cancel_and_wait(accepting)
        for listener in listeners:
            listener.close()
        await self._drain()
        # Set-ups still under way (a header or handshake in progress) and the sweeper.
        await _cancel_and_wait([*self.state.tasks, *([sweeper] if sweeper else [])])

    async def _accept(self, listener: socket.socket) -> None:
        state = self.state
        factory = lambda: EchoProtocol(state)  # noqa: E731
        set_up = self.tls is not None or self.config.proxy_protocol != "off"
        while True:
            if self._slots:
                await self._slots.acquire()
            try:
                sock, peer = await self.loop.sock_accept(listener)
            except OSError as exc:
                self.connection_closed()
                await asyncio.sleep(self.accept_failed(exc))
                continue
            self.accept_succeeded()
            if set_up:  # header and handshake run in a task: they must not hold up the accept loop
                state.start_task(self._set_up(sock, peer))
                continue
            try:
                await self.loop.connect_accepted_socket(factory, sock)
            except OSError:
                sock.close()
                self.connection_closed()

    async def _set_up(self, sock: socket.socket, peer: object) -> None:
        """The phases before the echo, each within its own total deadline: PROXY header, then TLS."""
        config, proxy = self.config, None
        try:
            if config.proxy_protocol != "off":
                try:
                    proxy = await asyncio.wait_for(self._read_proxy_header(sock, peer), config.header_timeout)
                except asyncio.TimeoutError:
                    raise Refused("header_timeout", f"no PROXY header within {config.header_timeout}s") from None
            started = self.loop.time()
            timeout = config.tls_handshake_timeout
            try:
                await self.loop.connect_accepted_socket(
                    lambda: EchoProtocol(self.state, proxy),
                    sock,
                    ssl=self.tls,
                    ssl_handshake_timeout=timeout if self.tls else None,
                )
            except (OSError, asyncio.TimeoutError):
                if self.tls is not None and self.loop.time() - started >= timeout * 0.99:
                    raise Refused("tls_timeout", f"TLS handshake not done within {timeout}s") from None
                raise
        except asyncio.CancelledError:
            sock.close()
            self.connection_closed()
            raise
        except Exception as exc:  # noqa: BLE001 - the one error path, as on an established connection
            kind = failure_kind(self.name, peer, exc)
            # Counted as the blocking loop counts it: a connection accepted, and closed with this error.
            self.stats.closed_connection(self.stats.opened(), error=kind)
            try:
                if kind in REFUSALS_TO_LINGER:
                    await self._linger(sock)
            finally:
                sock.close()
                self.connection_closed()

    async def _linger(self, sock: socket.socket) -> None:
        """As closing.linger: FIN, then discard what the peer sends, for LINGER_SECONDS in all."""
        shutdown_socket(sock, socket.SHUT_WR)
        discarded = 0

        async def discard() -> None:
            nonlocal discarded
            while discarded < LINGER_BYTES:
                await _readable(self.loop, sock)
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    return
                discarded += len(chunk)

        try:
            await asyncio.wait_for(discard(), LINGER_SECONDS)
        except (asyncio.TimeoutError, OSError):
            pass

    async def _read_proxy_header(self, sock: socket.socket, peer: object) -> ProxyHeaderReader:
        """Peek, then take only the header's bytes (see BlockingConnection._read_proxy_header)."""
        mode = self.config.proxy_protocol
        trusted = peer in self.state.trusted
        if not trusted and mode == "required":
            raise Refused("proxy_untrusted", f"PROXY header required, but {peer} is not in --proxy-trusted")
        reader = ProxyHeaderReader(mode)
        try:
            while not reader.done:
                await _readable(self.loop, sock)
                try:
                    peeked = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
                except BlockingIOError:
                    continue
                if not peeked:
                    raise Refused("proxy_header", "closed before the PROXY header was complete")
                take = reader.take(peeked)
                while take:
                    take -= len(sock.recv(take))
        except ProxyProtocolError as exc:
            raise Refused("proxy_header", f"bad PROXY header: {exc}") from None
        if reader.version is not None and not trusted:
            raise Refused("proxy_untrusted", f"PROXY header from {peer}, which is not in --proxy-trusted")
        return reader

    def connection_closed(self) -> None:
        if self._slots:
            self._slots.release()

    async def _sweep_idle(self) -> None:
        timeout = self.config.idle_timeout
        period = min(timeout / 4, 1.0)
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for protocol in self.state.live():
                protocol.check_idle(now, timeout)

    def wake(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopped.set)

    async def _drain(self) -> None:
        deadline = self.loop.time() + self.config.grace
        for protocol in self.state.live():
            protocol.drain()
        while self.connections and self.loop.time() < deadline and not self.forcing:
            await asyncio.sleep(0.02)
        if self.connections:
            log.warning("grace period over: closing %d connection(s)", len(self.connections))
            for protocol in self.state.live():
                protocol.transport.abort()
            while self.connections:
                await asyncio.sleep(0.01)


async def _cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` has something to read (or EOF), without reading it."""
    ready = loop.create_future()
    fd = sock.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
