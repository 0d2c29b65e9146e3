"""The Python API, driven by asyncio clients: hundreds of connections against an in-process server."""

from __future__ import annotations

import asyncio
import os

import pytest

from echoserver import ConfigError, ServerConfig, running_server
from support import connect, recv_exactly


async def echo_client(host: str, port: int, messages: int, size: int) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    verified = 0
    try:
        for _ in range(messages):
            payload = os.urandom(size)
            writer.write(payload)
            assert await reader.readexactly(size) == payload
            verified += size
    finally:
        writer.close()
        await writer.wait_closed()
    return verified


@pytest.mark.asyncio
async def test_hundreds_of_asyncio_clients(backend) -> None:
    with running_server(ServerConfig(backend=backend, port=0, grace=2)) as server:
        totals = await asyncio.wait_for(
            asyncio.gather(*(echo_client(server.host, server.port, 10, 100) for _ in range(300))), 60
        )
        assert sum(totals) == 300 * 10 * 100
    snapshot = server.snapshot()
    assert snapshot["accepted"] == snapshot["closed"] == 300
    assert snapshot["bytes_in"] == snapshot["bytes_out"] == 300 * 10 * 100
    assert snapshot["messages"] >= 300 * 10 and snapshot["active"] == 0


def test_running_server_yields_its_address_and_stops_cleanly(backend) -> None:
    with running_server(backend=backend, port=0, handler="upper") as server:
        with connect(server.address) as sock:
            sock.sendall(b"api")
            assert recv_exactly(sock, 3) == b"API"
    with pytest.raises(OSError):
        connect(server.address, timeout=0.2)


def test_running_server_reports_bad_configuration_before_starting() -> None:
    with pytest.raises(ConfigError, match="port"):
        with running_server(port=123456):
            pass
