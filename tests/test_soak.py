"""Soak and chaos: 100 clients of four temperaments for 20 s against each backend.

Well-behaved clients must get every byte back, whatever the rude ones do, and
the server must end with the descriptors and threads it started with.
Run alone with ``pytest -m slow``; it takes about half a minute per backend.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psutil
import pytest

from support import connect, connection_processes, recv_exactly, wait_for

SECONDS = float(os.environ.get("ECHOSERVER_SOAK_SECONDS", "20"))
MIX = {"normal": 55, "resetting": 15, "idle": 15, "slow_reader": 15}


@dataclass
class Tally:
    messages: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)
    mismatches: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, messages: int = 0, nbytes: int = 0, mismatch: bool = False, error: str = "") -> None:
        with self.lock:
            self.messages[kind] += messages
            self.bytes[kind] += nbytes
            self.mismatches[kind] += mismatch
            if error:
                self.errors[f"{kind}:{error}"] += 1


def normal(address, rng: random.Random, until: float, tally: Tally) -> None:
    """Closed loop, random sizes, every byte checked."""
    with connect(address) as sock:
        sock.settimeout(15)
        n = 0
        while time.monotonic() < until:
            payload = struct.pack("!Q", n) + rng.randbytes(rng.choice((8, 100, 1500, 20_000)))
            sock.sendall(payload)
            echoed = recv_exactly(sock, len(payload))
            tally.add("normal", 1, len(payload), mismatch=echoed != payload)
            n += 1


def resetting(address, rng: random.Random, until: float, tally: Tally) -> None:
    """Connect, send a little, read some or none, then vanish with an RST."""
    while time.monotonic() < until:
        sock = connect(address)
        sock.sendall(rng.randbytes(rng.randint(1, 200_000)))
        if rng.random() < 0.5:
            sock.recv(rng.randint(1, 4096))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        tally.add("resetting", 1)
        time.sleep(rng.uniform(0, 0.2))


def idle(address, rng: random.Random, until: float, tally: Tally) -> None:
    """Connect and say nothing; reconnect when the server's idle timeout closes us."""
    while time.monotonic() < until:
        with connect(address) as sock:
            sock.settimeout(max(0.1, until - time.monotonic()))
            try:
                if sock.recv(1) == b"":
                    tally.add("idle", 1)  # closed by the server's --idle-timeout
            except (TimeoutError, ConnectionResetError):
                pass


def slow_reader(address, rng: random.Random, until: float, tally: Tally) -> None:
    """Send 256 KiB, read it back in dribbles: the server must wait, not drop or buffer forever."""
    with connect(address) as sock:
        sock.settimeout(15)
        while time.monotonic() < until:
            payload = rng.randbytes(256 * 1024)
            sender = threading.Thread(target=sock.sendall, args=(payload,))
            sender.start()
            echoed = bytearray()
            while len(echoed) < len(payload):
                chunk = sock.recv(min(8192, len(payload) - len(echoed)))
                if not chunk:
                    break
                echoed += chunk
                time.sleep(0.002)
            sender.join(15)
            tally.add("slow_reader", 1, len(payload), mismatch=bytes(echoed) != payload)


def run_client(kind: str, index: int, address, until: float, tally: Tally) -> None:
    rng = random.Random(f"{kind}-{index}")
    try:
        globals()[kind](address, rng, until, tally)
    except OSError as exc:
        tally.add(kind, error=type(exc).__name__)


def resources(pid: int) -> tuple[int, int, int]:
    process = psutil.Process(pid)
    return process.num_fds(), process.num_threads(), len(connection_processes(pid))


@pytest.mark.slow
def test_soak_and_chaos(backend, start_server) -> None:
    # A pool as large as the crowd: this test is about integrity and leaks, not about the
    # queueing a smaller pool imposes (tests/test_models.py covers that).
    pool = ("--pool-size", "128") if backend == "threadpool" else ()
    server = start_server("--backend", backend, "--idle-timeout", "3", "--grace", "5", *pool)
    warm = [connect(server.address) for _ in range(130)]  # let a thread pool grow to its size first
    for sock in warm:
        sock.sendall(b"w")
        assert recv_exactly(sock, 1) == b"w"
    for sock in warm:
        sock.close()
    assert wait_for(lambda: resources(server.pid)[2] == 0)
    time.sleep(0.2)  # let the last closes settle before taking the baseline
    baseline = resources(server.pid)

    tally = Tally()
    until = time.monotonic() + SECONDS
    threads = [
        threading.Thread(target=run_client, args=(kind, i, server.address, until, tally))
        for kind, count in MIX.items()
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 30)
    assert not any(thread.is_alive() for thread in threads), "a client hung"

    def no_leak() -> bool:
        fds, threads_now, children = resources(server.pid)
        return fds == baseline[0] and threads_now <= baseline[1] and children == 0

    settled = wait_for(no_leak, timeout=10)
    print(
        f"\n{backend}: messages {dict(tally.messages)}, MiB verified "
        f"{(tally.bytes['normal'] + tally.bytes['slow_reader']) / 2**20:.1f}, mismatches "
        f"{sum(tally.mismatches.values())}, client errors {dict(tally.errors)}, "
        f"fds/threads/children before {baseline} after {resources(server.pid)}"
    )
    assert sum(tally.mismatches.values()) == 0
    assert not [e for e in tally.errors if e.startswith(("normal", "slow_reader"))], tally.errors
    assert tally.messages["normal"] > 0 and tally.messages["slow_reader"] > 0
    assert settled, f"leak: {baseline} -> {resources(server.pid)}"
    assert server.stop() == 0
    assert "Traceback" not in server.stderr
