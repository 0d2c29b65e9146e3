"""Binding the listening sockets, with errors a person can act on.

Sockets are bound before any backend starts, so that a port in use or an
address that does not exist is reported once, the same way, for every backend.
``--bind`` may name several: TCP on IPv4 and IPv6, and Unix sockets
(``unix:/run/echo.sock``), all served by the same backend instance.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

from echoserver.config import ConfigError, ServerConfig


class BindError(ConfigError):
    """The configuration is valid but this machine cannot listen where it asks."""


def bind_listeners(config: ServerConfig, reuse_port: bool = False) -> list[socket.socket]:
    """Every socket the configuration asks for; all or none (a failure closes the others)."""
    sockets: list[socket.socket] = []
    try:
        for where in config.listen_addresses():
            sockets.append(
                bind_unix(where[1], config.backlog)
                if where[0] == "unix"
                else bind_tcp(where[1], where[2], config.backlog, reuse_port)
            )
    except BaseException:
        close_listeners(sockets)
        raise
    return sockets


def bind_listener(config: ServerConfig) -> socket.socket:
    """The first listener of :func:`bind_listeners`, for callers that want exactly one."""
    return bind_listeners(config.replace(bind=config.bind[:1]))[0]


def bind_tcp(host: str, port: int, backlog: int, reuse_port: bool = False) -> socket.socket:
    host = host.strip("[]")
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise BindError("reuse_port", "this system has no SO_REUSEPORT (Linux 3.9+ has)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(
            "host", f"cannot resolve {host!r} ({exc.strerror}); use an IP address or a resolvable name"
        ) from None
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # one socket per worker on the same port; the kernel hashes connections over them
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _explain(exc, host, port) from None
    return sock


# The socket files this process created, by path: (device, inode) as bind() left them.
# remove_files() unlinks a path only while it is still that file, never a file or
# another server's socket that has taken its place since.
_created: dict[str, tuple[int, int]] = {}

UNIX_PATH_MAX = 107  # bytes, sun_path less its terminating NUL (Linux)


def bind_unix(path: str, backlog: int) -> socket.socket:
    """A Unix stream socket at ``path``, replacing a stale socket file left by a dead server."""
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise BindError(
            "bind",
            f"unix:{path} is {size} bytes long, more than the {UNIX_PATH_MAX} a Unix socket "
            "path may have; choose a shorter path",
        )
    _remove_if_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        created = os.stat(path)
        _created[path] = (created.st_dev, created.st_ino)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                "bind", f"unix:{path} exists and is not a socket; remove it or choose another path"
            ) from None
        raise BindError("bind", f"cannot listen on unix:{path}: {exc.strerror or exc}") from None
    return sock


def _remove_if_stale(path: str) -> None:
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # not ours to remove: bind() will say the path is taken
    except FileNotFoundError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens: a stale file from a server that did not clean up
            return
    raise BindError("bind", f"unix:{path} is in use by another server; stop it or choose another path")


def unix_paths(sockets: list[socket.socket]) -> list[str]:
    return [sock.getsockname() for sock in sockets if sock.family == socket.AF_UNIX]


def remove_files(paths: list[str]) -> None:
    """Remove the files of Unix listeners, once nothing serves on them any more.

    Only a socket this process created and that is still in place: if the path
    now names a regular file, or another server's socket, it is left alone.
    """
    for path in paths:
        identity = _created.get(path)
        with contextlib.suppress(OSError):
            found = os.lstat(path)
            if identity == (found.st_dev, found.st_ino) and stat.S_ISSOCK(found.st_mode):
                os.unlink(path)
                del _created[path]


def close_listeners(sockets: list[socket.socket]) -> None:
    paths = unix_paths(sockets)
    for sock in sockets:
        sock.close()
    remove_files(paths)


def _explain(exc: OSError, host: str, port: int) -> BindError:
    where = format_address((host, port))
    if exc.errno == errno.EADDRINUSE:
        return BindError(
            "port", f"{where} is already in use; stop the other server or choose another --port (0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return BindError(
            "port",
            f"permission denied to listen on {where}; ports below 1024 need root "
            "or CAP_NET_BIND_SERVICE, use --port 1024 or above",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return BindError("host", f"{host} is not an address of this machine; use 127.0.0.1, ::1 or 0.0.0.0")
    return BindError("host", f"cannot listen on {where}: {exc.strerror}")


def format_address(address: tuple | str) -> str:
    """``127.0.0.1:8080``, ``[::1]:8080`` or ``unix:/run/echo.sock``."""
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
