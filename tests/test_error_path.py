"""One error path: a bug on one connection is logged once, counted once, and hurts no other connection.

The server runs as a real process whose handler has been made to raise (a
hidden hook, ``ECHOSERVER_TEST_RAISE_ON``, in echoserver/sansio/handlers.py), so
the exception travels the same way it would for a real bug: out of the
handler, into whatever runs the connection (a thread, a pool future, a
connection process, a greenlet, an event-loop callback).
"""

from __future__ import annotations

import json
import time

from echoserver.spawn import ServerProcess
from support import connect, recv_exactly


def faulty_server(backend: str) -> ServerProcess:
    """The real CLI, with the hidden hook that makes ``--handler upper`` raise on b"boom" (see handlers.py)."""
    return ServerProcess(
        "--backend",
        backend,
        "--handler",
        "upper",
        "--log-format",
        "json",
        "--stats-interval",
        "0.1",
        "--grace",
        "3",
        env={"ECHOSERVER_TEST_RAISE_ON": "boom"},
    )


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
    failures = [r for r in records(server) if "injected by ECHOSERVER_TEST_RAISE_ON" in json.dumps(r)]
    assert len(failures) == 1, failures
    (failure,) = failures
    assert failure["level"] == "error"
    assert f" on {backend} failed" in failure["message"] and "127.0.0.1" in failure["message"]  # backend, peer
    # The traceback: a field of the record, or (relayed from fork's connection processes) in its text.
    traceback = failure.get("exception", "") + failure["message"]
    assert "Traceback" in traceback and "RuntimeError: injected by ECHOSERVER_TEST_RAISE_ON=boom" in traceback
