"""--bind: several listeners (IPv4, IPv6, Unix) served by one backend instance."""

from __future__ import annotations

import os
import socket

import pytest

from echoserver.observability.ready import parse_ready_line
from support import assert_one_line_error, recv_exactly, run_cli, wait_for

pytestmark = pytest.mark.freethreaded  # conformance: see conftest.py


def echo_over(family: int, address, payload: bytes) -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.sendall(payload)
        return recv_exactly(sock, len(payload))


def test_one_backend_serves_tcp4_tcp6_and_unix_at_once(backend, start_server, tmp_path) -> None:
    path = str(tmp_path / "echo.sock")
    server = start_server("--backend", backend, "--bind", "127.0.0.1:0", "--bind", "[::1]:0", "--bind", f"unix:{path}")

    def ready_lines() -> list[str]:
        lines = [line for line in server.stderr.splitlines() if line.startswith("listening on")]
        return lines if len(lines) == 3 else []

    lines = wait_for(ready_lines)
    assert len(lines) == 3 and parse_ready_line(lines[2]) == (f"unix:{path}", 0, backend)
    v6_port = int(lines[1].split("]:")[1].split()[0])
    assert echo_over(socket.AF_INET, server.address, b"four") == b"four"
    assert echo_over(socket.AF_INET6, ("::1", v6_port), b"six") == b"six"
    assert echo_over(socket.AF_UNIX, path, b"unix") == b"unix"
    assert server.stop() == 0
    assert not os.path.exists(path), "the socket file is removed on exit"


def test_a_stale_socket_file_is_replaced(start_server, tmp_path) -> None:
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(path)  # a file left behind by a server that died: nobody listens
    server = start_server("--backend", "thread", "--bind", f"unix:{path}")
    assert server.host == f"unix:{path}"
    assert echo_over(socket.AF_UNIX, path, b"fresh") == b"fresh"


def test_a_unix_path_in_use_or_not_a_socket_is_a_one_line_error(start_server, tmp_path) -> None:
    path = str(tmp_path / "busy.sock")
    start_server("--backend", "thread", "--bind", f"unix:{path}")
    assert_one_line_error(run_cli("--bind", f"unix:{path}"), 2, "in use")
    regular = tmp_path / "file"
    regular.write_text("not a socket")
    assert_one_line_error(run_cli("--bind", f"unix:{regular}"), 2, "not a socket")
    assert regular.read_text() == "not a socket"


@pytest.mark.parametrize("spec", ["8080", "localhost:", "unix:", "[::1]:99999", "127.0.0.1:\u00b2", "[::1]:\u0661"])
def test_bad_bind_values(spec) -> None:
    assert_one_line_error(run_cli("--bind", spec), 2, "--bind")


def test_a_unicode_digit_in_ECHOSERVER_BIND_is_a_one_line_error() -> None:
    assert_one_line_error(run_cli(env={"ECHOSERVER_BIND": "127.0.0.1:\u00b2"}), 2, "--bind")


def test_a_unix_path_too_long_says_how_long_and_what_to_do(tmp_path) -> None:
    path = str(tmp_path / ("x" * 120))
    result = run_cli("--bind", f"unix:{path}")
    assert_one_line_error(result, 2, "more than the 107", "shorter path")
    assert "None" not in result.stderr


@pytest.mark.parametrize("replacement", ["regular file", "another server's socket"])
def test_exit_removes_only_the_socket_file_it_created(start_server, tmp_path, replacement) -> None:
    path = tmp_path / "echo.sock"
    first = start_server("--backend", "thread", "--bind", f"unix:{path}")
    os.unlink(path)
    if replacement == "regular file":
        path.write_text("someone else's")
    else:
        other = socket.socket(socket.AF_UNIX)
        other.bind(str(path))
        other.listen()
    identity = os.stat(path).st_ino
    assert first.stop() == 0
    assert path.exists() and os.stat(path).st_ino == identity, f"the {replacement} at the path was removed"
    if replacement != "regular file":
        assert echo_over(socket.AF_UNIX, str(path), b"") == b""  # still connectable: nothing unlinked it
        other.close()
