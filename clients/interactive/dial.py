"""Reaching any listener echoserver has: TCP, ``unix:/PATH``, and either of them in TLS.

Shared by ``echo-client`` and ``echo-probe``; standard library only, because
the probe runs as the Docker HEALTHCHECK and must start fast. Also knows what
a plain-text client sees when it talks to a TLS listener by mistake (an
immediate close or reset, or a TLS alert record), so the tools can say so
instead of reporting a bare "connection reset".
"""

from __future__ import annotations

import socket
import ssl

TLS_HINT = (
    "that is how a TLS listener answers plain text (add --tls; --tls-insecure for a self-signed "
    "certificate), and how a server that requires a PROXY header answers a connection without one "
    "(add --send-proxy v2)"
)
_TLS_ALERT = b"\x15\x03"  # a TLS alert record: content type 21, protocol version 3.x


def describe(host: str, port: int) -> str:
    if host.startswith("unix:"):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tls_context(ca_file: str = "", insecure: bool = False) -> ssl.SSLContext:
    """Verify against ``ca_file`` (or the system store), unless ``insecure``."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(host: str, port: int, timeout: float, context: ssl.SSLContext | None = None) -> socket.socket:
    """A connected socket (wrapped in TLS when ``context`` is given), with ``timeout`` set on it."""
    if host.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(host[len("unix:") :])
        except OSError:
            sock.close()
            raise
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if context is None:
        return sock
    try:
        name = None if host.startswith("unix:") else host
        if name is None:
            context.check_hostname = False  # a path has no name to check a certificate against
        return context.wrap_socket(sock, server_hostname=name)
    except (OSError, ssl.SSLError):
        sock.close()
        raise


def looks_like_tls(reply: bytes, error: BaseException | None = None) -> bool:
    """What a plain-text first message to a TLS listener gets back: an alert, or a close/reset with nothing."""
    if reply.startswith(_TLS_ALERT):
        return True
    return not reply and (error is None or isinstance(error, (ConnectionResetError, BrokenPipeError)))
