"""One error path: a bug on one connection is logged once, counted once, and hurts no other connection.

The server runs as a real process whose handler has been made to raise (the
script below replaces ``UpperHandler.transform`` before the CLI starts), so
the exception travels the same way it would for a real bug: out of the
handler, into whatever runs the connection (a thread, a pool future, a child
process, a greenlet, an event-loop callback).
"""

from __future__ import annotations

import json
import time

from echoserver.spawn import ServerProcess
from support import connect, recv_exactly

# Runs the real CLI with a handler that raises on a message containing b"boom".
FAULTY_SERVER = """
import sys
from echoserver import backends
backends.prepare_process(sys.argv[sys.argv.index("--backend") + 1])
from echoserver.sansio import handlers

def transform(self, data):
    if b"boom" in data:
        raise RuntimeError("injected by the test")
    return bytes(data).upper()

handlers.UpperHandler.transform = transform
from echoserver.cli import main
main()
"""


def faulty_server(backend: str) -> ServerProcess:
    server = ServerProcess("--backend", backend, "--handler", "upper", "--log-format", "json",
                           "--stats-interval", "0.1", "--grace", "3")
    server.args[1:3] = ["-c", FAULTY_SERVER]  # instead of "-m echoserver"
    return server


def records(server: ServerProcess) -> list[dict]:
    """Every line of the server's stderr as a JSON record: a bare traceback would fail to parse."""
    return [json.loads(line) for line in server.stderr.splitlines() if line.strip()]


def errors_counted(server: ServerProcess, timeout: float = 10.0) -> dict:
    """The error counters once they have shown up and three more stats lines have confirmed them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = [r.get("errors") for r in records(server) if r["logger"] == "echoserver.stats"]
        first = next((i for i, errors in enumerate(stats) if errors), None)
        if first is not None and len(stats) > first + 3:
            return stats[-1]
        time.sleep(0.05)
    return {}


def test_an_exception_in_the_handler_is_logged_once_counted_once_and_isolated(backend) -> None:
    with faulty_server(backend) as server:
        with connect(server.address) as bystander:
            bystander.sendall(b"before")
            assert recv_exactly(bystander, 6) == b"BEFORE"
            with connect(server.address) as victim:
                victim.settimeout(10)
                victim.sendall(b"ok")
                assert recv_exactly(victim, 2) == b"OK"
                victim.sendall(b"boom")
                try:
                    assert victim.recv(100) == b""  # the failed connection ends; no reply to the bad message
                except ConnectionResetError:
                    pass
            payload = bytes(range(97, 123)) * 1000
            bystander.sendall(payload)
            assert recv_exactly(bystander, len(payload)) == payload.upper()
        assert errors_counted(server) == {"server": 1}
    failures = [r for r in records(server) if "injected by the test" in json.dumps(r)]
    assert len(failures) == 1, failures
    (failure,) = failures
    assert failure["level"] == "error"
    assert failure["backend"] == backend and "127.0.0.1" in failure["peer"]
    assert "RuntimeError: injected by the test" in failure["exception"]
    assert "Traceback" in failure["exception"]
