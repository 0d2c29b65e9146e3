"""Nothing outlives the server: every task an event-loop backend starts is done when ``run`` returns.

The server runs in this process (``running_server``), so the test can look at
its event loop after it has stopped: a TLS handshake left half-way by a peer
and the idle sweeper were both still pending there once (issue 12).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from echoserver import backends
from echoserver.backends.eventloop import EventLoopBackend
from echoserver.config import ServerConfig
from echoserver.server import running_server
from support import connect

EVENT_LOOP_BACKENDS = [
    pytest.param(name, id=name, marks=() if spec.available else pytest.mark.skip(reason=spec.why_unavailable()))
    for name, spec in backends.REGISTRY.items()
    if not spec.available or issubclass(backends.load(name), EventLoopBackend)
]


def pending_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task]:
    return [task for task in asyncio.all_tasks(loop) if not task.done()]


@pytest.mark.parametrize("backend", EVENT_LOOP_BACKENDS)
@pytest.mark.parametrize("setup", ["TLS handshake", "PROXY header"])
def test_tasks_are_cancelled_and_awaited_at_shutdown(backend, tls_files, caplog, setup) -> None:
    options = (
        dict(tls_cert=tls_files["cert"], tls_key=tls_files["key"])
        if setup == "TLS handshake"
        else dict(proxy_protocol="required")
    )
    config = ServerConfig(backend=backend, port=0, idle_timeout=30, grace=0.5, **options)
    with caplog.at_level(logging.DEBUG, logger="asyncio"), running_server(config) as server:
        loop = server.backend.loop
        before = len(pending_tasks(loop))
        with connect(server.address):  # connected, and then silent: its set-up never ends
            deadline = time.monotonic() + 10
            while len(pending_tasks(loop)) <= before and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(pending_tasks(loop)) > before, "the set-up task never started"
            server.stop()
    assert pending_tasks(loop) == []
    gc.collect()
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
