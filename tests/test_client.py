"""echo-client: a line in, the server's reply out."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def echo_client(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "echoclients.interactive.client", *args], input=stdin,
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


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
