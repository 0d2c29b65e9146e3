"""The one ``asyncio.Protocol`` of the event-loop backends (asyncio and uvloop).

It works at the callback level rather than with streams: no task and no future
per connection on the fast path, where most of an asyncio server's overhead
would otherwise go. A plain echo (no handler work, no pacing) is one
``transport.write`` per chunk received.

Flow control: when the transport's write buffer passes ``--write-buffer-limit``
the loop calls :meth:`EchoProtocol.pause_writing` and the protocol stops reading
from that client until the buffer drains, so a client that never reads cannot
make the server buffer without bound. Paced replies (``--io-delay``, injected
faults) queue their input in order for one worker task per connection, and that
queue is bounded the same way.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import TYPE_CHECKING, cast

from echoserver.backends.closing import LINGER_SECONDS, failure_kind, record_close, reset_connection, shutdown_socket
from echoserver.backends.state import ServerState
from echoserver.sansio.faults import Pacing
from echoserver.sansio.handlers import PLAIN_ECHO, make_handler

if TYPE_CHECKING:
    from echoserver.sansio.proxy_protocol import ProxyHeaderReader

log = logging.getLogger("echoserver.connection")


class EchoProtocol(asyncio.Protocol):
    # Slots, not a __dict__: with thousands of idle connections, bytes per connection
    # is what the event-loop backends are chosen for. The protocol is its own
    # counter object (bytes_in, bytes_out, messages), registered with the stats.
    __slots__ = (
        "server",
        "handler",
        "pacing",
        "plain",
        "transport",
        "bytes_in",
        "bytes_out",
        "messages",
        "seen_bytes_in",
        "quiet_since",
        "ended",
        "backlog",
        "backlog_bytes",
        "worker",
        "eof",
        "writing_paused",
        "reading_paused",
        "lingering",
        "proxy",
    )

    def __init__(self, server: ServerState, proxy: ProxyHeaderReader | None = None) -> None:
        config = server.config
        self.server = server  # the narrow owner: settings, counters, the live set, the loop
        self.proxy = proxy  # the PROXY header read before the transport existed, if any
        self.handler = make_handler(config)
        self.pacing = Pacing(config) if config.paced else None
        self.plain = self.handler is PLAIN_ECHO and self.pacing is None  # as in BlockingConnection._echo
        # Set by connection_made, before any other callback can run.
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.bytes_in = self.bytes_out = self.messages = 0
        self.seen_bytes_in = -1  # what the idle sweeper saw last time: unchanged means idle
        self.quiet_since = 0.0
        self.ended: str | None = None  # "idle", or the error kind that ended it
        self.backlog: collections.deque | None = None  # paced replies only: chunks waiting, in order
        self.backlog_bytes = 0
        self.worker: asyncio.Task | None = None
        self.eof = False
        self.writing_paused = False
        self.reading_paused = False
        self.lingering = False  # the server has ended the connection: discard input until the peer's FIN

    # -- transport callbacks ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.server.config.write_buffer_limit)
        if hasattr(transport, "max_size"):  # asyncio's recv size (uvloop reads into a buffer of its own)
            # 256 KiB by default: above glibc's initial mmap threshold, so every read of a fresh
            # server was an mmap+mremap+munmap (4x the CPU per message until a big free raised it).
            transport.max_size = self.server.config.buffer_size
        extra = getattr(transport, "_extra", None)
        if type(extra) is dict:
            # asyncio stores the server's own address on every connection's transport: a tuple, a
            # str and an int, 146 bytes of 1.9 KiB an idle connection costs (docs/c100k.md); the
            # server never asks for it. uvloop computes it only when asked, and keeps nothing.
            extra.pop("sockname", None)
        self.server.stats.opened(self)
        self.server.opened(self)
        if self.server.banner:
            transport.write(self.server.banner)
            self.bytes_out += len(self.server.banner)
        if self.proxy is not None and self.proxy.leftover:
            self.data_received(self.proxy.leftover)  # payload taken while looking for a header
        if self.server.stopping:
            self.drain()

    def data_received(self, data: bytes) -> None:
        # try costs nothing in 3.11 until something raises; then it is the one error path,
        # not asyncio's "Fatal error: protocol.data_received() call failed" plus our own log.
        try:
            n = len(data)
            self.bytes_in += n
            if self.plain:
                self.transport.write(data)
                self.bytes_out += n
                self.messages += 1
            elif self.lingering:
                pass
            elif self.pacing is None:
                self._reply(*self.handler.feed(data))
            else:
                if self.backlog is None:
                    self.backlog = collections.deque()
                self.backlog.append(data)
                self.backlog_bytes += n
                self._update_reading()
                if self.worker is None:
                    self.worker = self.server.start_task(self._paced_replies())
        except Exception as exc:  # noqa: BLE001 - any bug: logged and counted once, this connection only
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """The one error path (see echoserver.backends.closing), then cut this connection."""
        if self.ended is None:
            self.ended = failure_kind(self.server.backend, self.peer, exc)
        self.transport.abort()

    def eof_received(self) -> bool | None:
        if self.lingering:
            self.transport.close()
            return None
        self.eof = True
        if self.worker is None:
            try:
                self._finish()
            except Exception as exc:  # noqa: BLE001 - see data_received
                self._fail(exc)
                return None
        # Keep the transport open until _finish has queued every reply. (TLS
        # transports close on EOF whatever we answer, after flushing.)
        return None if self.server.tls else True

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.ended is None:
            self.ended = failure_kind(self.server.backend, self.peer, exc)
        if self.worker is not None:
            self.worker.cancel()
        ended = self.ended
        idle = ended == "idle"
        record_close(self.server.stats, self, self.peer, idle=idle, error=None if idle else ended, proxy=self.proxy)
        self.server.closed(self)

    def check_idle(self, now: float, timeout: float) -> None:
        """Called by the idle sweeper: close this connection if it made no progress for ``timeout``."""
        if self.bytes_in != self.seen_bytes_in or self.worker is not None:
            self.seen_bytes_in = self.bytes_in
            self.quiet_since = now
        elif now - self.quiet_since >= timeout and self.ended is None:
            log.debug("closing %s: idle for %ss", self.peer, timeout)
            self.ended = "idle"
            transport = self.transport
            # close() would wait for a stalled reader to take what is buffered.
            (transport.abort if transport.get_write_buffer_size() else transport.close)()

    # -- replies ----------------------------------------------------------------

    def _reply(self, reply: bytes, units: int) -> None:
        self.messages += units
        if reply:
            self.transport.write(reply)
            self.bytes_out += len(reply)
        if self.handler.closing:
            self._end()

    def _end(self) -> None:
        """The server ends the connection: FIN after what is queued, then linger (see ``connection.linger``)."""
        transport = self.transport
        if self.lingering or transport.is_closing():
            return
        if not transport.can_write_eof():  # TLS: close_notify and close
            transport.close()
            return
        self.lingering = True
        transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    async def _paced_replies(self) -> None:
        """Replies in order, each after its wait (a sleep that yields to the loop) and its faults."""
        pacing, stats, transport = self.pacing, self.server.stats, self.transport
        assert pacing is not None, "only paced connections start this task"
        try:
            finished = await self._paced_backlog(pacing, stats, transport)
        except Exception as exc:  # noqa: BLE001 - see data_received
            self._fail(exc)
            return
        finally:
            self.worker = None
        if finished and self.eof:
            self._finish()

    async def _paced_backlog(self, pacing: Pacing, stats, transport: asyncio.Transport) -> bool:
        """Work through the backlog; False if the connection ended on the way."""
        while self.backlog:
            data = self.backlog.popleft()
            self.backlog_bytes -= len(data)
            self._update_reading()
            reply, units = self.handler.feed(data)
            wait = pacing.wait_before_reply(units)
            if wait:
                await asyncio.sleep(wait)
                if pacing.delay:
                    stats.count("fault_delayed")
            if transport.is_closing() or self.lingering:
                return False
            if units and pacing.reset_now():
                stats.count("fault_reset")
                reset_connection(transport.get_extra_info("socket"))
                transport.abort()
                return False
            reply, spent = pacing.allow(reply)
            if pacing.trickle and reply:
                stats.count("fault_trickled")
                for piece, pause in pacing.pieces(reply):
                    self._reply(bytes(piece), 0)
                    await asyncio.sleep(pause)
                    if transport.is_closing():
                        return False
                reply = b""
            self._reply(reply, units)
            if spent:
                stats.count("fault_truncated")
                self._end()
                return False
        return True

    def _finish(self) -> None:
        tail = self.handler.eof()
        if tail:
            self.transport.write(tail)
            self.bytes_out += len(tail)
        self.transport.close()  # sends what is buffered, then FIN

    # -- flow control and shutdown ----------------------------------------------

    @property
    def peer(self) -> object:
        return self.transport.get_extra_info("peername") if self.transport else None

    def _update_reading(self) -> None:
        should_pause = self.writing_paused or self.backlog_bytes > self.server.config.write_buffer_limit
        if should_pause != self.reading_paused and not self.transport.is_closing():
            self.reading_paused = should_pause
            (self.transport.pause_reading if should_pause else self.transport.resume_reading)()

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
