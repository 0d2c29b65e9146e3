"""Validate before starting anything: a mistake is one line and exit 2, whatever ``--workers`` says.

A configuration that cannot work is found in the process that binds and forks,
before it binds or forks: never once per worker, never as a traceback, never as
something else (a missing certificate is not "port in use").
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from echoserver.config import ConfigError, ServerConfig
from echoserver.server import running_server, serve

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "echoserver", *args], capture_output=True, text=True, timeout=30)


def assert_one_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_missing_certificate_is_one_line_whatever_the_workers(backend, workers) -> None:
    result = run_cli(
        "--backend",
        backend,
        "--port",
        "0",
        "--workers",
        workers,
        "--tls-cert",
        "/missing/cert.pem",
        "--tls-key",
        "/missing/key.pem",
    )
    assert_one_line(result, "--tls-cert", "/missing/cert.pem does not exist")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_key_that_does_not_match_the_certificate_is_one_line(tls_files, tmp_path, workers) -> None:
    import trustme

    other = tmp_path / "other-key.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(other)
    result = run_cli(
        "--backend",
        "fork",
        "--port",
        "0",
        "--workers",
        workers,
        "--tls-cert",
        tls_files["cert"],
        "--tls-key",
        str(other),
    )
    assert_one_line(result, "--tls-cert/--tls-key: cannot load", "KEY_VALUES_MISMATCH")


def test_certificate_files_are_checked_before_the_port_is_bound() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli(
            "--backend",
            "thread",
            "--port",
            port,
            "--workers",
            "2",
            "--tls-cert",
            "/missing/cert.pem",
            "--tls-key",
            "/missing/key.pem",
        )
    assert_one_line(result, "/missing/cert.pem")
    assert "in use" not in result.stderr


def test_a_port_in_use_is_one_line_with_workers() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("--backend", "fork", "--port", str(taken.getsockname()[1]), "--workers", "2")
    assert_one_line(result, "already in use")


def test_a_unix_socket_in_a_missing_directory_is_one_line_with_workers(tmp_path) -> None:
    result = run_cli("--backend", "fork", "--workers", "2", "--bind", f"unix:{tmp_path}/no/such/dir/echo.sock")
    assert_one_line(result, "unix:")


def test_running_server_refuses_workers_instead_of_running_one() -> None:
    with pytest.raises(ConfigError) as raised:
        with running_server(backend="thread", port=0, workers=2):
            pass
    assert raised.value.option == "workers"


def test_serve_raises_config_error_not_system_exit() -> None:
    with pytest.raises(ConfigError) as raised:  # from the config itself, or at the latest from serve()
        serve(ServerConfig(backend="thread", port=0, workers=2, tls_cert="/missing/c.pem", tls_key="/missing/k.pem"))
    assert raised.value.option == "tls_cert"


def test_serve_raises_config_error_for_an_unknown_backend() -> None:
    with pytest.raises(ConfigError) as raised:
        serve(ServerConfig(backend="carrier-pigeon", port=0))
    assert raised.value.option == "backend"


def test_no_process_management_module_knows_about_gevent() -> None:
    """What is special about a backend's processes belongs to its class (``after_fork``, ``original``)."""
    package = ROOT / "echoserver"
    modules = [*package.glob("processes/*.py"), *package.glob("workers/*.py"), package / "server.py"]
    offenders = [str(path.relative_to(ROOT)) for path in modules if re.search("gevent", path.read_text(), re.I)]
    assert modules and offenders == []
