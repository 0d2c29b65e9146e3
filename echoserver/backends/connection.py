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
from typing import Callable

from ..config import ServerConfig
from ..handlers import make_handler
from ..stats import Stats

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


def peer_error_kind(exc: BaseException) -> str | None:
    """The error kind if ``exc`` is the peer's doing, ``None`` if it is ours."""
    if isinstance(exc, OSError):
        return PEER_ERRNOS.get(exc.errno)
    return None


class BlockingConnection:
    """One client on a blocking socket, served until it or the server is done."""

    __slots__ = ("sock", "config", "stats", "sleep", "peer", "_drained")

    def __init__(self, sock: socket.socket, config: ServerConfig, stats: Stats,
                 sleep: Callable[[float], None], peer: object = None) -> None:
        self.sock = sock
        self.config = config
        self.stats = stats
        self.sleep = sleep
        self.peer = peer
        self._drained = False

    def run(self) -> None:
        sock, config = self.sock, self.config
        counters = self.stats.opened()
        handler = make_handler(config)
        buffer = bytearray(config.buffer_size)
        view = memoryview(buffer)
        recv_into, sendall, feed = sock.recv_into, sock.sendall, handler.feed
        delay = config.io_delay_s
        idle = False
        error = None
        try:
            sock.settimeout(config.idle_timeout or None)
            while True:
                n = recv_into(buffer)
                if not n:
                    tail = handler.eof()
                    if tail:
                        sendall(tail)
                        counters.bytes_out += len(tail)
                    break
                counters.bytes_in += n
                reply, units = feed(view[:n])
                if delay and units:
                    self.sleep(delay * units)
                if reply:
                    sendall(reply)
                    counters.bytes_out += len(reply)
                counters.messages += units
                if handler.closing:
                    break
            sock.shutdown(socket.SHUT_WR)
        except socket.timeout:
            idle = True
            log.debug("closing %s: idle for %ss", self.peer, config.idle_timeout)
        except OSError as exc:
            error = peer_error_kind(exc)
            if error is None:
                error = "server"
                log.warning("connection %s failed: %s", self.peer, exc)
            else:
                log.debug("connection %s: %s", self.peer, exc)
        finally:
            sock.close()
            self.stats.closed_connection(counters, idle=idle, error=error)

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
