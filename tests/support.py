"""Client-side helpers for the tests: connect with retries, read exactly, read to EOF."""

from __future__ import annotations

import socket
import time


def connect(address, timeout: float = 10.0) -> socket.socket:
    """Connect with retries for a few seconds: readiness is proved by a connection, never a sleep."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(address, timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


FORK_SERVER_NAME = "echo-forkserver"  # what the fork backend's fork server calls itself (prctl PR_SET_NAME)


def connection_processes(pid: int) -> list:
    """The live processes serving connections under server ``pid`` (fork backend): its descendants,
    less its fork server and any zombie (dead, waiting to be reaped: see :func:`zombies`)."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() != FORK_SERVER_NAME and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def zombies(pid: int) -> list:
    """Descendants of ``pid`` that have exited and that nobody has reaped."""
    import psutil

    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found
