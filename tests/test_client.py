"""echo-client: a line in, the server's reply out."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def echo_client(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "echoclients.interactive.client", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_each_line_comes_back(start_server):
    server = start_server("--backend", "thread")
    proc = echo_client(server.host, str(server.port), stdin="hello\nsecond line\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\nsecond line\n"


def test_the_reply_is_shown_as_the_server_sent_it(start_server):
    server = start_server("--backend", "asyncio", "--handler", "upper")
    proc = echo_client(server.host, str(server.port), stdin="shout\n")
    assert proc.stdout == "SHOUT\n"


def test_no_server_is_one_line_and_exit_1():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = echo_client("127.0.0.1", str(port), stdin="x\n")
    assert proc.returncode == 1
    assert proc.stderr.startswith("echo-client: cannot connect") and len(proc.stderr.splitlines()) == 1


def test_a_bad_port_is_a_usage_error():
    proc = echo_client("127.0.0.1", "not-a-port")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_tls_with_the_servers_ca(start_server, tls_files):
    server = start_server("--backend", "asyncio", "--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"])
    proc = echo_client("--tls", "--tls-ca", tls_files["ca"], server.host, str(server.port), stdin="secret\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "secret\n"


def test_plain_text_to_a_tls_listener_says_so_at_once(start_server, tls_files):
    server = start_server("--backend", "thread", "--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"])
    started = time.monotonic()
    proc = echo_client(server.host, str(server.port), stdin="hello there\n")
    assert proc.returncode == 1
    assert "add --tls" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert time.monotonic() - started < 4.5  # not the 5 s reply timeout


def test_a_unix_socket_target(start_server, tmp_path):
    path = tmp_path / "echo.sock"
    start_server("--backend", "gevent", "--bind", f"unix:{path}")
    proc = echo_client(f"unix:{path}", stdin="over a unix socket\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "over a unix socket\n"


def test_a_tcp_host_without_a_port_is_a_usage_error():
    proc = echo_client("127.0.0.1")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "PORT" in proc.stderr


def probe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "echoclients.interactive.probe", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--port", "70000"),
        ("--port", "0"),
        ("--port", "x"),
        ("--timeout", "-1"),
        ("--size", "1"),
        ("--nonsense",),
        ("--tls-insecure",),
    ],
)
def test_probe_usage_errors_are_one_line_exit_2(args):
    proc = probe(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("echo-probe: error:") and proc.stderr.count("\n") == 1


def test_probe_speaks_tls_and_unix(start_server, tls_files, tmp_path):
    path = tmp_path / "echo.sock"
    server = start_server(
        "--backend",
        "asyncio",
        "--tls-cert",
        tls_files["cert"],
        "--tls-key",
        tls_files["key"],
        "--bind",
        "127.0.0.1:0",
        "--bind",
        f"unix:{path}",
    )
    assert probe("--port", str(server.port), "--tls", "--tls-ca", tls_files["ca"]).returncode == 0
    assert probe("--host", f"unix:{path}", "--tls", "--tls-insecure").returncode == 0
    plain = probe("--port", str(server.port))
    assert plain.returncode == 1 and "add --tls" in plain.stderr
