"""Counters, the Prometheus endpoint, /healthz, the stats line and JSON logs, on every backend."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import pytest

from support import connect, metrics_url, recv_exactly, recv_until_eof, scrape, stalled_writer, wait_for

pytestmark = pytest.mark.freethreaded  # conformance: see conftest.py


def healthz(server) -> int:
    try:
        return urllib.request.urlopen(metrics_url(server) + "/healthz", timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code


def test_counters_equal_what_the_clients_did(backend, start_server) -> None:
    server = start_server("--backend", backend, "--metrics-port", "0")
    sent = 0
    for n in range(1, 8):
        with connect(server.address) as sock:
            for _ in range(n):
                payload = b"m" * (100 * n)
                sock.sendall(payload)
                assert recv_exactly(sock, len(payload)) == payload
                sent += len(payload)

    def settled() -> dict | None:
        samples = scrape(server)
        return samples if samples["echoserver_connections_closed_total"] == 7 else None

    samples = wait_for(settled)
    assert samples, scrape(server)
    assert samples["echoserver_connections_accepted_total"] == 7
    assert samples["echoserver_connections_active"] == 0
    assert samples["echoserver_received_bytes_total"] == sent
    assert samples["echoserver_sent_bytes_total"] == sent
    assert samples["echoserver_messages_total"] >= 28  # one message per chunk read, at least one per send
    assert samples["echoserver_process_cpu_seconds_total"] > 0
    assert samples["echoserver_process_resident_memory_bytes"] > 1 << 20
    assert samples[f"echoserver_info{{backend={backend}}}"] == 1
    assert samples["echoserver_gil_enabled"] == (0 if server.gil == "off" else 1)


def test_live_connections_are_counted_while_open(backend, start_server) -> None:
    server = start_server("--backend", backend, "--metrics-port", "0")
    socks = [connect(server.address) for _ in range(3)]
    for sock in socks:
        sock.sendall(b"x" * 1000)
        assert recv_exactly(sock, 1000) == b"x" * 1000

    def live() -> dict | None:
        samples = scrape(server)
        return samples if samples["echoserver_received_bytes_total"] == 3000 else None

    samples = wait_for(live, timeout=5)
    assert samples, scrape(server)
    assert samples["echoserver_connections_active"] == 3
    for sock in socks:
        sock.close()


def test_idle_closes_are_counted(backend, start_server) -> None:
    server = start_server("--backend", backend, "--metrics-port", "0", "--idle-timeout", "0.3")
    with connect(server.address) as sock:
        sock.settimeout(5)
        assert sock.recv(1) == b""
    assert wait_for(lambda: scrape(server)["echoserver_connections_idle_closed_total"] == 1)
    # A fork child's counters reach the parent in pieces (published rows, then the reaped total).
    assert wait_for(lambda: scrape(server)["echoserver_connections_closed_total"] == 1)
    assert not errors_counted(scrape(server))  # an idle close is the server's policy, not an error


def test_errors_are_counted_once_by_kind(backend, start_server) -> None:
    server = start_server("--backend", backend, "--metrics-port", "0", "--proxy-protocol", "required")
    with connect(server.address) as bad:  # no PROXY header: closed without a reply, and counted
        bad.settimeout(5)
        bad.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert recv_until_eof(bad) == b""
    assert wait_for(lambda: errors_counted(scrape(server))) == {"proxy_header": 1}
    assert wait_for(lambda: scrape(server)["echoserver_connections_closed_total"] == 1)
    assert errors_counted(scrape(server)) == {"proxy_header": 1}  # once, not once per report


def errors_counted(samples: dict[str, float]) -> dict[str, float]:
    """``echoserver_errors_total`` by kind, the kinds that are not zero only."""
    prefix = "echoserver_errors_total{kind="
    return {name[len(prefix) : -1]: value for name, value in samples.items() if name.startswith(prefix) and value}


def test_healthz_answers_while_accepting_and_fails_while_draining(backend, start_server) -> None:
    server = start_server("--backend", backend, "--metrics-port", "0", "--grace", "30")
    assert healthz(server) == 200
    stalled = stalled_writer(server.address)  # keeps the server draining after the signal
    server.signal(signal.SIGTERM)
    assert wait_for(lambda: healthz(server) == 503)
    server.signal(signal.SIGTERM)  # second signal: stop now
    assert server.proc.wait(15) == 0
    stalled.close()


def test_stats_line_and_json_logs(backend, start_server) -> None:
    server = start_server("--backend", backend, "--stats-interval", "0.2", "--log-format", "json")
    with connect(server.address) as sock:
        sock.sendall(b"counted")
        assert recv_exactly(sock, 7) == b"counted"
    assert wait_for(lambda: '"logger": "echoserver.stats"' in server.stderr)
    assert server.stop() == 0
    records = [json.loads(line) for line in server.stderr.splitlines()]  # every line, the ready line too
    ready = next(r for r in records if r["message"].startswith("listening on "))
    assert ready["backend"] == backend
    stats = [r for r in records if r["logger"] == "echoserver.stats"]
    assert {"conn_per_s", "msgs_per_s", "mb_in_per_s", "mb_out_per_s", "active"} <= set(stats[0])
    assert any(r["msgs_per_s"] > 0 for r in stats) or stats[-1]["active"] == 0
    assert any(r["message"].startswith("stopped: 1 connection, 7 bytes in, 7 bytes out") for r in records)


def test_metrics_port_in_use_is_a_one_line_error(start_server) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "echoserver", "--port", "0", "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 2
    assert "--metrics-port" in result.stderr and "Traceback" not in result.stderr


def test_workers_report_into_the_same_totals(backend, start_server) -> None:
    server = start_server("--backend", backend, "--workers", "2", "--metrics-port", "0")
    for _ in range(12):
        with connect(server.address) as sock:
            sock.sendall(b"w" * 250)
            assert recv_exactly(sock, 250) == b"w" * 250

    def settled() -> dict | None:
        samples = scrape(server)
        return samples if samples["echoserver_connections_closed_total"] == 12 else None

    samples = wait_for(settled, timeout=5)
    assert samples, scrape(server)
    assert samples["echoserver_connections_accepted_total"] == 12
    assert samples["echoserver_received_bytes_total"] == samples["echoserver_sent_bytes_total"] == 3000
    assert samples["echoserver_processes"] >= 3  # the supervisor and its two workers
    assert healthz(server) == 200


def test_unknown_paths_are_404(start_server) -> None:
    server = start_server("--backend", "asyncio", "--metrics-port", "0")
    base = metrics_url(server)
    for path in ("/", "/favicon.ico", "/metrics/extra"):
        try:
            code = urllib.request.urlopen(base + path, timeout=10).status
        except urllib.error.HTTPError as error:
            code = error.code
        assert code == 404, path
    assert urllib.request.urlopen(base + "/metrics", timeout=10).status == 200
