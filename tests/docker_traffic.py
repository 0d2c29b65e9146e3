"""Traffic from the host into the stacks: exact round trips, HAProxy's stats, conversations that record every byte.

Kept apart from tests/test_docker.py so that the test module reads as the
sequence of documented commands it runs.
"""

from __future__ import annotations

import csv
import io
import random
import threading
import time
import urllib.request

import pytest

from support import connect, recv_exactly

REPLICAS = 3
STATS_URL = "http://127.0.0.1:9180/stats;csv"


def stats() -> list[dict[str, str]]:
    """HAProxy's rows for the replicas' slots (``replica1`` .. ``replica8``)."""
    with urllib.request.urlopen(STATS_URL, timeout=5) as response:
        text = response.read().decode().lstrip("# ")
    return [
        row
        for row in csv.DictReader(io.StringIO(text))
        if row["pxname"] == "replicas" and row["svname"] not in ("BACKEND", "FRONTEND")
    ]


def replicas_up() -> list[dict[str, str]]:
    return [row for row in stats() if row["status"] == "UP"]


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


def round_trips(port: int, connections: int, messages: int) -> None:
    """Concurrent connections, each echoing ``messages`` distinct payloads exactly."""
    socks = [connect(("127.0.0.1", port)) for _ in range(connections)]
    try:
        for seq in range(messages):
            payloads = [random.randbytes(1 + (seq * 97 + i) % 4000) for i in range(connections)]
            for sock, payload in zip(socks, payloads):
                sock.sendall(payload)
            for sock, payload in zip(socks, payloads):
                assert recv_exactly(sock, len(payload)) == payload
    finally:
        for sock in socks:
            sock.close()


class EchoConversation(threading.Thread):
    """One connection through the balancer, echoing numbered messages until :meth:`finish`.

    Records every byte sent and received so that the test can say exactly
    what, if anything, was lost. Bounded: at most 15 s without an answer, and
    it stops when told to.
    """

    def __init__(self, index: int, port: int):
        super().__init__(daemon=True)
        self.index = index
        self.stop = threading.Event()
        self.sent = self.received = 0
        self.messages_after_stop = 0
        self.mismatches = 0
        self.closed: str | None = None
        self.closed_at = 0.0
        self.replica_stopped = threading.Event()
        self.sock = connect(("127.0.0.1", port))

    def run(self):
        seq = 0
        with self.sock:
            self.sock.settimeout(15)
            while not self.stop.is_set():
                payload = f"{self.index}:{seq}:".encode() + random.randbytes(200)
                try:
                    self.sock.sendall(payload)
                    self.sent += len(payload)
                    echoed = recv_exactly(self.sock, len(payload))
                except OSError as exc:
                    self.closed, self.closed_at = f"{type(exc).__name__}: {exc}", time.monotonic()
                    return
                self.received += len(echoed)
                if len(echoed) < len(payload):
                    self.closed = "EOF" if echoed == payload[: len(echoed)] else "EOF after a wrong byte"
                    self.closed_at = time.monotonic()
                    return
                if echoed != payload:
                    self.mismatches += 1
                if self.replica_stopped.is_set():
                    self.messages_after_stop += 1
                seq += 1
                time.sleep(0.01)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=20)
