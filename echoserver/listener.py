"""Binding the listening socket, with errors a person can act on.

The socket is bound before any backend starts, so that a port in use or an
address that does not exist is reported once, the same way, for every backend.
"""

from __future__ import annotations

import errno
import socket

from .config import ConfigError, ServerConfig


class BindError(ConfigError):
    """The configuration is valid but this machine cannot listen where it asks."""


def bind_listener(config: ServerConfig) -> socket.socket:
    host = config.host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError("host", f"cannot resolve {host!r} ({exc.strerror}); "
                                "use an IP address or a resolvable name") from None
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(config.backlog)
    except OSError as exc:
        sock.close()
        raise _explain(exc, host, config.port) from None
    return sock


def _explain(exc: OSError, host: str, port: int) -> BindError:
    where = format_address((host, port))
    if exc.errno == errno.EADDRINUSE:
        return BindError("port", f"{where} is already in use; "
                                 "stop the other server or choose another --port (0 picks a free one)")
    if exc.errno == errno.EACCES:
        return BindError("port", f"permission denied to listen on {where}; ports below 1024 need root "
                                 "or CAP_NET_BIND_SERVICE, use --port 1024 or above")
    if exc.errno == errno.EADDRNOTAVAIL:
        return BindError("host", f"{host} is not an address of this machine; use 127.0.0.1, ::1 or 0.0.0.0")
    return BindError("host", f"cannot listen on {where}: {exc.strerror}")


def format_address(address: tuple) -> str:
    """``127.0.0.1:8080`` or ``[::1]:8080``."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
