"""--reuse-port: with --workers, each worker accepts on a socket of its own, and a burst is shared out."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from echoserver.spawn import ServerProcess
from support import connect, recv_exactly

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")


def test_a_burst_of_connections_reaches_every_worker():
    server = ServerProcess("--backend", "asyncio", "--workers", "2", "--reuse-port", "--log-level", "info").start()
    try:
        sockets = [connect(server.address) for _ in range(24)]
        for n, sock in enumerate(sockets):
            sock.sendall(b"%03d" % n)
        assert [recv_exactly(sock, 3) for sock in sockets] == [b"%03d" % n for n in range(24)]
        for sock in sockets:
            sock.close()
    finally:
        assert server.stop() == 0
    served = [int(n) for n in re.findall(r"worker \d+ stopped: (\d+) connection", server.stderr)]
    # Hashed over two sockets, 24 connections all land on one with probability 2**-23.
    assert len(served) == 2 and sum(served) == 24 and min(served) > 0, served


@pytest.mark.parametrize(
    "args, words",
    [
        (("--reuse-port",), "--workers 2 or more"),
        (("--reuse-port", "--workers", "2", "--bind", "unix:/tmp/x.sock"), "TCP listeners only"),
    ],
)
def test_reuse_port_usage_errors(args, words):
    proc = subprocess.run(
        [sys.executable, "-m", "echoserver", "--port", "0", *args], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1
