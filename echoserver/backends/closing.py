"""How a connection ends, the same way on every backend: classify, log once, count once, close cleanly.

Both connection loops (the blocking :mod:`~echoserver.backends.stream` and the
event-loop :mod:`~echoserver.backends.protocol`) import from here and from
nowhere above them, so neither depends on the other.

The one error path is :func:`failure_kind`: whatever runs a connection (a
thread, a pool future, a child process, a greenlet, a task) hands it the
exception that ended the connection. A peer's doing (a reset, a broken TLS
stream) is routine and logged at debug level; anything else is a bug of ours
and is logged once, with its traceback and the backend's name. The kind it
returns is counted once, by :func:`record_close`, as the connection ends.
"""

from __future__ import annotations

import _socket
import errno
import logging
import os
import socket
import struct
import time
from typing import Any

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


class Refused(Exception):
    """The peer failed a set-up phase (PROXY header, TLS handshake): ``kind`` is what is counted."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


# Refusals worth a warning: a misconfigured proxy in front of us, not a slow or vanished peer.
# They end with a FIN and a linger, like any close of ours, not with an RST.
REFUSALS_TO_LINGER = _WARN = {"proxy_header", "proxy_untrusted"}


def error_kind(exc: BaseException) -> str:
    """What ended a connection: a peer's doing (``reset``, ``tls``...), or ``server`` if it was ours."""
    if isinstance(exc, Refused):
        return exc.kind
    number = getattr(exc, "errno", None)
    kind = PEER_ERRNOS.get(number) if isinstance(number, int) else None
    if kind is None and "SSL" in type(exc).__name__:
        kind = "tls"  # a failed handshake or a broken TLS stream: the peer's, whichever ssl module raised it
    return kind or "server"


def failure_kind(backend: str, peer: object, exc: BaseException) -> str:
    """The one error path: log what ended a connection once, and return the kind to count.

    A bug of ours (any exception that is not a peer's doing) is logged at
    error level with its traceback, the backend and the peer.
    """
    kind = error_kind(exc)
    if kind == "server":
        log.error(
            "connection %s on %s failed: %r",
            peer,
            backend,
            exc,
            exc_info=exc,
            extra={"backend": backend, "peer": str(peer)},
        )
    elif kind in _WARN:
        log.warning("closing %s: %s", peer, exc)
    else:
        log.debug("connection %s: %s", peer, exc)
    return kind


def record_close(stats, counters, peer: object, *, idle: bool = False, error: str | None = None, proxy=None) -> None:
    """What every backend does as a connection ends: count it, once, with why it ended."""
    if proxy is not None and proxy.version:
        stats.count(f"proxied_v{proxy.version}")
        log.debug("connection %s was %s:%s behind a proxy", peer, *proxy.source or ("?", "?"))
    stats.closed_connection(counters, idle=idle, error=error)


LINGER_SECONDS = 2.0  # after the server ends a connection, how long (in all) it reads and discards
LINGER_BYTES = 1 << 20


def linger(sock: socket.socket, seconds: float = LINGER_SECONDS) -> None:
    """Read and discard what the peer still sends, for at most ``seconds`` in all, after our FIN.

    Closing a socket with unread data makes the kernel send an RST, and an RST
    can destroy our last reply (an error line, the end of a byte budget) before
    the peer has read it. Waiting for the peer's own FIN avoids that. The
    deadline is total, not per read: a peer trickling a byte now and then must
    not hold the connection open.
    """
    deadline = time.monotonic() + seconds
    discarded = 0
    try:
        while discarded < LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                return
            discarded += len(chunk)
    except OSError:
        pass  # timed out or reset: we are closing anyway


class ResetInjected(Exception):
    """``--reset-probability`` chose this reply: the connection ends with an RST."""


def reset_connection(sock: Any) -> None:
    """Make the coming close an RST (SO_LINGER 0) rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def shutdown_socket(sock: Any, how: int) -> None:
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
