"""The one connection loop of the blocking backends.

``thread``, ``threadpool``, ``fork`` and ``gevent`` differ only in *who* calls
:meth:`BlockingConnection.run` (a new thread, a pool worker, a child process, a
greenlet); the loop itself is this file. It relies on blocking-socket
semantics, which gevent provides cooperatively.

Backpressure comes for free here: ``sendall`` blocks while the peer is not
reading, so the loop stops calling ``recv`` and the kernel's buffers, not ours,
hold the rest.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING

from echoserver.sansio.faults import Pacing
from echoserver.sansio.handlers import PLAIN_ECHO, make_handler
from echoserver.net.tls import HANDSHAKE_TIMEOUT

if TYPE_CHECKING:
    from echoserver.backends.blocking import BlockingBackend

log = logging.getLogger("echoserver.connection")

# What a misbehaving or vanished peer looks like: routine, logged at debug level.
PEER_ERRNOS = {
    errno.ECONNRESET: "reset",
    errno.EPIPE: "broken_pipe",
    errno.ECONNABORTED: "aborted",
    errno.ETIMEDOUT: "timeout",
    errno.ENOTCONN: "not_connected",
    errno.EHOSTUNREACH: "unreachable",
}


def error_kind(exc: BaseException) -> str:
    """What ended a connection: a peer's doing (``reset``, ``tls``...), or ``server`` if it was ours."""
    kind = PEER_ERRNOS.get(getattr(exc, "errno", None))
    if kind is None and "SSL" in type(exc).__name__:
        kind = "tls"  # a failed handshake or a broken TLS stream: the peer's, whichever ssl module raised it
    return kind or "server"


def log_failure(peer: object, exc: BaseException, kind: str) -> None:
    """A peer's misbehaviour is routine (debug); a failure of ours is not (warning)."""
    (log.warning if kind == "server" else log.debug)("connection %s: %s", peer, exc)


def record_close(stats, counters, handler, peer: object, *, idle: bool = False, error: str | None = None) -> None:
    """What every backend does as a connection ends: say why the handler closed it, and count it."""
    if handler.error:
        error = "proxy_header"
        log.warning("closing %s: %s", peer, handler.error)
    if handler.proxy_version:
        stats.count(f"proxied_v{handler.proxy_version}")
        log.debug("connection %s was %s:%s behind a proxy", peer, *handler.source or ("?", "?"))
    stats.closed_connection(counters, idle=idle, error=error)


LINGER_SECONDS = 2.0  # after the server ends a connection, how long it reads and discards before closing
LINGER_BYTES = 1 << 20


def linger(sock: socket.socket) -> None:
    """Read and discard what the peer still sends, briefly, after our FIN.

    Closing a socket with unread data makes the kernel send an RST, and an RST
    can destroy our last reply (an error line, the end of a byte budget) before
    the peer has read it. Waiting for the peer's own FIN avoids that.
    """
    sock.settimeout(LINGER_SECONDS)
    discarded = 0
    try:
        while discarded < LINGER_BYTES and (chunk := sock.recv(65536)):
            discarded += len(chunk)
    except OSError:
        pass  # timed out or reset: we are closing anyway


class ResetInjected(Exception):
    """``--reset-probability`` chose this reply: the connection ends with an RST."""


def reset_connection(sock: object) -> None:
    """Make the coming close an RST (SO_LINGER 0) rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class BlockingConnection:
    """One client on a blocking socket, served until it or the server is done."""

    __slots__ = ("sock", "backend", "peer", "_drained")

    def __init__(self, sock: socket.socket, backend: "BlockingBackend", peer: object = None) -> None:
        self.sock = sock
        self.backend = backend
        self.peer = peer
        self._drained = False

    def run(self) -> None:
        backend, config = self.backend, self.backend.config
        stats = backend.stats
        counters = stats.opened()
        handler = make_handler(config)
        idle = False
        error = None
        try:
            if backend.tls is not None:
                self.sock.settimeout(HANDSHAKE_TIMEOUT)
                self.sock = backend.tls.wrap_socket(self.sock, server_side=True)
            sock = self.sock
            sock.settimeout(config.idle_timeout or None)
            if backend.banner:
                sock.sendall(backend.banner)
                counters.bytes_out += len(backend.banner)
            ended_by_peer = self._echo(sock, handler, counters, Pacing(config) if config.paced else None)
            sock.shutdown(socket.SHUT_WR)
            if not ended_by_peer:
                linger(sock)
        except socket.timeout:
            idle = True
            log.debug("closing %s: idle for %ss", self.peer, config.idle_timeout)
        except ResetInjected:
            log.debug("reset %s (fault injection)", self.peer)
        except OSError as exc:
            error = error_kind(exc)
            log_failure(self.peer, exc, error)
        finally:
            self.sock.close()
            record_close(stats, counters, handler, self.peer, idle=idle, error=error)

    def _echo(self, sock: socket.socket, handler, counters, pacing: Pacing | None) -> bool:
        """The loop: read, hand to the handler, send what it returns, until EOF (True) or the server closes."""
        recv, sendall, feed, size = sock.recv, sock.sendall, handler.feed, self.backend.config.buffer_size
        if handler is PLAIN_ECHO and pacing is None:
            # What the handler would do, without calling it: the loop of the bare reference servers
            # plus three counters (docs/overhead.md measures what the call cost). `while True`, not
            # `while data := recv(size)`: CPython 3.11 warms a function up for specialisation only on
            # entry and on an unconditional backward jump, and a fork child enters this once, so a
            # loop that ends in a conditional jump back would run unspecialised for its whole life.
            while True:
                data = recv(size)
                if not data:
                    return True
                n = len(data)
                counters.bytes_in += n
                sendall(data)
                counters.bytes_out += n
                counters.messages += 1
        while True:
            data = recv(size)  # a fresh bytes each time: no buffer held by an idle connection
            if not data:
                tail = handler.eof()
                if tail:
                    sendall(tail)
                    counters.bytes_out += len(tail)
                return True
            counters.bytes_in += len(data)
            reply, units = feed(data)
            if pacing is None:
                if reply:
                    sendall(reply)
                    counters.bytes_out += len(reply)
                counters.messages += units
            elif not self._paced_reply(sock, reply, units, pacing, counters):
                return False
            if handler.closing:
                return False

    def _paced_reply(self, sock: socket.socket, reply: bytes, units: int, pacing: Pacing, counters) -> bool:
        """The slow path: wait, maybe reset, send within the byte budget, maybe trickle. False: close now."""
        stats, sleep = self.backend.stats, self.backend.sleep
        wait = pacing.wait_before_reply(units)
        if wait:
            sleep(wait)
            if pacing.delay:
                stats.count("fault_delayed")
        if units and pacing.reset_now():
            stats.count("fault_reset")
            reset_connection(sock)
            raise ResetInjected
        reply, spent = pacing.allow(reply)
        for piece, pause in pacing.pieces(reply):
            sendall = sock.sendall
            sendall(piece)
            counters.bytes_out += len(piece)
            if pause:
                sleep(pause)
        if pacing.trickle and reply:
            stats.count("fault_trickled")
        counters.messages += units
        if spent:
            stats.count("fault_truncated")
        return not spent

    def drain(self) -> None:
        """Stop reading new data: what the kernel already holds is echoed, then the loop sees EOF.

        ``shutdown(SHUT_RD)`` wakes a ``recv`` blocked in another thread or
        greenlet, which ``close`` would not do safely.
        """
        if not self._drained:
            self._drained = True
            shutdown_socket(self.sock, socket.SHUT_RD)

    def abort(self) -> None:
        """Cut the connection now: a blocked ``recv`` or ``sendall`` fails at once."""
        shutdown_socket(self.sock, socket.SHUT_RDWR)


def shutdown_socket(sock: object, how: int) -> None:
    """``shutdown()`` the kernel socket behind ``sock``, whatever object wraps it.

    It goes through a duplicate descriptor and the C-level ``_socket`` so that
    no wrapper intercepts it: gevent's ``shutdown`` would fail the waiting
    greenlet with EBADF instead of letting it read what is queued and then EOF,
    and asyncio/uvloop transports expose only a restricted socket.
    """
    try:
        dup = _socket.socket(fileno=os.dup(sock.fileno()))
    except OSError:
        return  # already closed: nothing left to stop
    try:
        dup.shutdown(how)
    except OSError:
        pass  # never connected, or the peer is already gone
    finally:
        dup.close()
