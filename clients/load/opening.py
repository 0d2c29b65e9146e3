"""What a connection does between its TCP connect and its first message.

With ``--tls``, ``--send-proxy`` or ``--banner-lines`` a connection is not
ready when the TCP connect completes: it still has a PROXY header to send, a
TLS handshake to make and banner lines to read and drop, in that order (the
order HAProxy and echoserver use: the header in clear, before the ClientHello;
the banner inside TLS). :meth:`Opening.steps` is those steps written once as a generator over
one socket. On a non-blocking socket it yields the epoll event it waits for
and the epoll worker resumes it when that event arrives; on a blocking one
it never waits, so the blocking engine simply runs it to the end. A plain TCP
run builds no :class:`Opening` at all, and its connections take the hot path
exactly as before.
"""

from __future__ import annotations

import select
import ssl
from collections.abc import Generator
from dataclasses import dataclass

from echoclients.load.connection import ClosedByServer
from echoserver.sansio.proxy_protocol import encode_v1, encode_v2

CONNECTED = 0  # yielded once TCP (and TLS) are up: the connect latency ends here
WAIT_IN, WAIT_OUT = select.EPOLLIN, select.EPOLLOUT
_ENCODERS = {"v1": encode_v1, "v2": encode_v2}


def client_context(ca_file: str = "", insecure: bool = False) -> ssl.SSLContext:
    """A client context that verifies the server against ``ca_file`` or the system store, unless ``insecure``."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Opening:
    """The steps every connection of a run takes before its first message; built once per process."""

    context: ssl.SSLContext | None = None
    server_name: str | None = None
    proxy: str = ""  # "", "v1" or "v2"
    banner_lines: int = 0

    @classmethod
    def from_spec(cls, spec) -> Opening | None:
        """``None`` when a connection is ready as soon as TCP is: nothing to do, nothing to slow down."""
        if not (spec.tls or spec.send_proxy or spec.banner_lines):
            return None
        context = client_context(spec.tls_ca, spec.tls_insecure) if spec.tls else None
        return cls(context, spec.host, spec.send_proxy, spec.banner_lines)

    def steps(self, holder) -> Generator[int, None, None]:
        """Drive ``holder.sock`` (replaced by its TLS wrapper with ``--tls``) up to its first message.

        Yields ``WAIT_IN``/``WAIT_OUT`` to wait for the socket, and ``CONNECTED``
        (0) once, when the connection counts as established. Raises ``OSError``
        (``ssl.SSLError`` included) when the connection fails on the way.
        """
        sock = holder.sock
        if self.proxy:
            local, peer = sock.getsockname(), sock.getpeername()
            header = memoryview(_ENCODERS[self.proxy](local[:2], peer[:2]))
            while header:
                try:
                    header = header[sock.send(header) :]
                except BlockingIOError:
                    yield WAIT_OUT
        if self.context is not None:
            sock = holder.sock = self.context.wrap_socket(
                sock, server_hostname=self.server_name, do_handshake_on_connect=False
            )
            while True:
                try:
                    sock.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    yield WAIT_IN
                except ssl.SSLWantWriteError:
                    yield WAIT_OUT
        yield CONNECTED
        lines = self.banner_lines
        while lines > 0:
            try:
                data = sock.recv(4096)  # the server sends nothing but its banner before the first message
            except (BlockingIOError, ssl.SSLWantReadError):
                yield WAIT_IN
                continue
            except ssl.SSLWantWriteError:
                yield WAIT_OUT
                continue
            if not data:
                raise ClosedByServer("the server closed the connection before its banner ended")
            lines -= data.count(b"\n")


def tls_calls(sock: ssl.SSLSocket) -> tuple:
    """``recv``/``send`` for the epoll loop over a non-blocking TLS socket.

    They speak the plain socket's dialect (``BlockingIOError`` when the call
    would block), so the loop needs no TLS case of its own. ``recv`` also
    drains what the TLS layer has already decrypted and buffered, up to the
    size asked for: epoll sees the kernel's bytes, not those.
    """
    ssl_recv, ssl_send, pending = sock.recv, sock.send, sock.pending
    want = (ssl.SSLWantReadError, ssl.SSLWantWriteError)

    def recv(size: int) -> bytes:
        try:
            data = ssl_recv(size)
        except want:
            raise BlockingIOError from None
        while len(data) < size and pending():
            data += ssl_recv(size - len(data))
        return data

    def send(data) -> int:
        try:
            return ssl_send(data)
        except want:
            raise BlockingIOError from None

    return recv, send
