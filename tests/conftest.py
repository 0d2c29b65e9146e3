"""Shared fixtures: every backend-parametrised test runs once per installed backend."""

from __future__ import annotations

import socket
import time

import pytest

from echoserver.backends import REGISTRY
from echoserver.process import ServerProcess

BACKENDS = list(REGISTRY)


def backend_params() -> list:
    """Every registered backend; one whose package is missing is skipped, visibly."""
    return [
        pytest.param(name, id=name, marks=() if spec.available else
                     pytest.mark.skip(reason=spec.why_unavailable()))
        for name, spec in REGISTRY.items()
    ]


@pytest.fixture(params=backend_params())
def backend(request) -> str:
    return request.param


@pytest.fixture
def start_server():
    """``start_server("--backend", name, ...)`` -> a ready :class:`ServerProcess`, stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs) -> ServerProcess:
        server = ServerProcess(*args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        try:
            server.stop(timeout=15)
        finally:
            server.kill()


@pytest.fixture
def server(backend, start_server) -> ServerProcess:
    """A plain echo server of the parametrised backend, on a free port."""
    return start_server("--backend", backend, "--grace", "3")


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
