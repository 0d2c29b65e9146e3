"""echo-load with many connections: source addresses, paced connects, descriptor limits, its own memory."""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from echoclients.load.spec import LoadSpec, SpecError

ROOT = Path(__file__).resolve().parent.parent


def echo_load(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "echoclients.load.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


@pytest.fixture
def peer_recording_server():
    """An echo server that remembers every peer address it accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    peers: list[str] = []
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client that resets is not this server's problem
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            peers.append(peer[0])
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname(), peers
    stop.set()
    thread.join()
    listener.close()


def test_connections_are_spread_over_the_source_addresses_asked_for(peer_recording_server):
    (host, port), peers = peer_recording_server
    proc = echo_load(
        "--host",
        host,
        "--port",
        str(port),
        "--clients",
        "12",
        "--source-addresses",
        "3",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--json",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["errors"] == {}
    assert sorted(peers) == sorted(["127.0.0.2", "127.0.0.3", "127.0.0.4"] * 4)


def test_source_addresses_default_to_one_per_10000_loopback_connections():
    spec = LoadSpec(clients=25_000, processes=4)
    assert spec.sources(socket.AF_INET, ("127.0.0.1", 8080)) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert LoadSpec(clients=100).sources(socket.AF_INET, ("127.0.0.1", 8080)) is None
    assert spec.sources(socket.AF_INET, ("10.0.0.1", 8080)) is None  # not ours to invent: the kernel chooses


def test_source_addresses_need_a_loopback_target():
    with pytest.raises(SpecError, match="source-addresses"):
        LoadSpec(source_addresses=2).sources(socket.AF_INET6, ("::1", 8080, 0, 0))


def test_connects_are_paced_by_connect_rate(peer_recording_server):
    (host, port), peers = peer_recording_server
    started = time.monotonic()
    proc = echo_load(
        "--host",
        host,
        "--port",
        str(port),
        "--clients",
        "20",
        "--connect-rate",
        "50",
        "--duration",
        "0.2",
        "--warmup",
        "0",
        "--json",
        "--quiet",
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert len(peers) == 20
    assert elapsed >= 19 / 50  # the 20th connect is due 0.38 s after the first, and not before


def test_more_connections_than_one_process_may_hold_says_how_many_processes(peer_recording_server):
    (host, port), _ = peer_recording_server
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 500_000:
        pytest.skip("no descriptor limit to run into")
    proc = echo_load("--host", host, "--port", str(port), "--clients", str(hard + 1))
    assert proc.returncode == 2
    assert "use --processes 2 or more" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option", ["--connect-rate=-5", "--source-addresses=999"])
def test_bad_values_are_one_line_usage_errors(option):
    proc = echo_load(option)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_result_reports_the_clients_own_memory_per_connection(peer_recording_server):
    (host, port), _ = peer_recording_server
    proc = echo_load(
        "--host",
        host,
        "--port",
        str(port),
        "--clients",
        "50",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--json",
        "--quiet",
    )
    result = json.loads(proc.stdout)
    assert result["client_bytes_per_connection"] > 0
    assert result["cpu"]["per_process_rss_growth"][0] == pytest.approx(
        result["client_bytes_per_connection"] * 50, abs=50
    )


def test_server_is_sampled_when_the_load_is_spread_over_processes():
    from echoserver.spawn import ServerProcess

    with ServerProcess("--backend", "asyncio", "--workers", "2", "--log-level", "warning") as server:
        host, port = server.address
        proc = echo_load(
            "--host",
            host,
            "--port",
            str(port),
            "--clients",
            "4",
            "--processes",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--server-pid",
            str(server.pid),
            "--json",
            "--quiet",
        )
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    # The supervisor and its two workers, sampled once (by the first process), kept through the merge.
    assert result["server"]["processes"] == 3 and result["server"]["pss_mb"] > 0
    assert result["server"]["pss_mb_before"] > 0 and "bytes_per_connection" in result["server"]
    # Held connections are measured once all are open and before any message; the run's end separately.
    assert result["server"]["pss_mb_connected"] > 0 and "bytes_per_connection_after_run" in result["server"]
