"""One client connection's state, and how socket failures are named.

Everything the epoll loop needs per connection lives in one ``__slots__``
object: where the connection is in the stream it sends and in the stream it
expects back, what it still owes the kernel, and when each message in flight
left.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from collections import deque

from echoclients.load.payload import Stream

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2+
clock = time.monotonic_ns  # CLOCK_MONOTONIC: comparable across the worker processes

_KINDS = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.EPIPE: "reset",
    errno.ECONNABORTED: "reset",
    errno.ETIMEDOUT: "timeout",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
}


class ClosedByServer(ConnectionError):
    """The server closed the connection (FIN) while this client still expected bytes."""


def error_kind(exc_or_errno: OSError | int) -> str:
    """Sort socket failures into the few kinds the report counts (docs/load.md lists them)."""
    code = exc_or_errno if isinstance(exc_or_errno, int) else exc_or_errno.errno
    if isinstance(exc_or_errno, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc_or_errno, ClosedByServer):
        return "closed_by_server"
    if isinstance(exc_or_errno, ssl.SSLCertVerificationError):
        return "tls_verify"
    if isinstance(exc_or_errno, ssl.SSLError):
        return "tls"
    return _KINDS.get(code, errno.errorcode.get(code, "error").lower())


class Connection:
    """One client connection's state: where it is in its stream, and what it is owed."""

    __slots__ = (
        "index",
        "sock",
        "recv",
        "send",
        "expected",
        "out",
        "rpos",
        "spos",
        "low",
        "high",
        "partial",
        "owed",
        "sent_at",
        "messages",
        "corrupt",
        "connect_started",
        "writing",
        "period",
        "opening",
    )

    def __init__(self, index: int, stream: Stream, out: memoryview | None = None) -> None:
        self.index = index
        self.sock: socket.socket | None = None
        self.expected = stream.expected
        self.out = memoryview(stream.sent) if out is None else out  # a view of the shared pool: share it too
        self.low, self.high, self.period = stream.base, stream.base + stream.period, stream.period
        self.rpos = self.spos = stream.base  # next byte expected / next byte to send
        self.partial = 0  # bytes of the current reply received so far
        self.owed = 0  # bytes queued but not yet accepted by the kernel
        self.sent_at: deque[int] = deque()  # send (or, open loop, intended) time per message in flight
        self.messages = 0
        self.corrupt = False  # the reply being received has a byte that differs
        self.writing = False  # registered for EPOLLOUT
        self.opening = None  # with --tls, --send-proxy or --banner-lines: the steps still to take

    def open(self, family: int, sockaddr: tuple, source: str | None = None) -> int:
        """Start a non-blocking connect (from local address ``source``); 0 or EINPROGRESS means it is under way."""
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        if family != socket.AF_UNIX:  # Unix sockets have no Nagle to turn off
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source is not None:
            # Choose the port at connect time, per destination: a port picked by bind() alone
            # is unique per source address, which caps one address at ~28k connections in all.
            self.sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            try:
                self.sock.bind((source, 0))
            except OSError as exc:
                return exc.errno or errno.EADDRNOTAVAIL
        self.recv, self.send = self.sock.recv, self.sock.send
        self.connect_started = clock()
        return self.sock.connect_ex(sockaddr)

    def bad_messages(self, data: bytes, size: int) -> int:
        """The slow path, taken only when a read differs: how many messages it completes wrongly.

        Walks the read message by message so that a corrupt byte is charged
        to the message it belongs to; a corrupt message still incomplete at
        the end of the read is remembered in ``corrupt``.
        """
        pos, partial, rpos, bad = 0, self.partial, self.rpos, 0
        while pos < len(data):
            seg = min(size - partial, len(data) - pos)
            if not self.expected.startswith(data[pos : pos + seg], rpos):
                self.corrupt = True
            pos, partial, rpos = pos + seg, partial + seg, rpos + seg
            rpos = rpos if rpos < self.high else rpos - self.period
            if partial == size:
                bad += self.corrupt
                partial, self.corrupt = 0, False
        return bad
