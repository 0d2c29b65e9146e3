"""Helpers shared by the test modules (a test module never imports another one).

Connect with retries, read exactly or to EOF, poll for a condition, run the commands as a
user would, read the metrics endpoint.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent


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


def wait_for(condition, timeout: float = 10.0, interval: float = 0.02):
    """Poll ``condition`` until it returns something truthy; its last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def echo_once(address, payload: bytes = b"hello") -> None:
    with connect(address) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload


def round_trip_time(address, payload: bytes = b"ping") -> float:
    with connect(address) as sock:
        started = time.perf_counter()
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
        return time.perf_counter() - started


def stalled_writer(address) -> socket.socket:
    """A client that writes far more than it reads: the server ends up blocked writing to it."""
    sock = connect(address)
    sock.setblocking(False)
    chunk = b"x" * 65536
    deadline = time.monotonic() + 10
    blocked_since = None
    while time.monotonic() < deadline:
        try:
            sock.send(chunk)
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > 1.0:
                break  # both directions full: the server is stuck writing to us
            time.sleep(0.01)
    return sock


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 30, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "echoserver", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def echo_load(*args: str, timeout: float = 60) -> tuple[int, dict | None, str]:
    """Run the real CLI; (exit code, parsed --json result or None, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "echoclients.load.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    result = json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else None
    return proc.returncode, result, proc.stderr


def port_args(address) -> tuple[str, ...]:
    return ("--host", address[0], "--port", str(address[1]))


def metrics_url(server) -> str:
    found = wait_for(lambda: re.search(r"metrics on (http://\S+)/metrics", server.stderr))
    assert found, server.stderr
    return found.group(1)


def scrape(server) -> dict[str, float]:
    """Every sample of the endpoint, by name plus labels."""
    text = urllib.request.urlopen(metrics_url(server) + "/metrics", timeout=10).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


def _socket_line(local_port: int, remote_port: int, state: str = "[0-9A-F]{2}") -> re.Match | None:
    """The kernel's line for a TCP socket (groups: receive queue, inode), from ``/proc/net/tcp`` or ``tcp6``.

    One regular-expression search per table (not a parse of every line, which takes seconds
    on a machine with a few hundred thousand sockets open).
    """
    line = re.compile(
        rf"^ *\d+: [0-9A-F]+:{local_port:04X} [0-9A-F]+:{remote_port:04X} {state} "
        rf"[0-9A-F]+:([0-9A-F]+) \S+ \S+ +\d+ +\d+ +(\d+)",
        re.M,
    )
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        found = line.search(Path(table).read_text())
        if found:
            return found
    return None


def server_socket(server_port: int, client_port: int) -> tuple[int, int] | None:
    """``(unread bytes, inode)`` of the server's end of the connection from ``client_port``."""
    found = _socket_line(server_port, client_port)
    return (int(found.group(1), 16), int(found.group(2))) if found else None


def unaccepted(server_port: int) -> int | None:
    """Connections waiting in the accept queue of the listener on ``server_port`` (a listening socket's
    receive-queue column); None if nothing listens there."""
    found = _socket_line(server_port, 0, state="0A")
    return int(found.group(1), 16) if found else None


def unread_bytes(server_port: int, client_port: int) -> int | None:
    """Bytes the kernel holds for the server's end of a connection that the server has not read yet."""
    found = server_socket(server_port, client_port)
    return found and found[0]


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
