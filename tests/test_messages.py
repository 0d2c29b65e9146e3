"""Error messages a person can act on: each names the value, the variable or the file that is wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ENV = {k: v for k, v in os.environ.items() if not k.startswith("ECHOSERVER_")}


def echoserver(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "echoserver", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**ENV, **(env or {})},
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    return proc.stderr


def test_a_bad_delay_is_shown_as_typed_not_as_a_tuple():
    message = one_line(echoserver("--port", "0", "--delay", "-5"))
    assert "got -5:0" in message and "(" not in message.split("got")[1]


def test_a_value_from_the_environment_names_its_variable():
    assert "ECHOSERVER_PORT" in one_line(echoserver(env={"ECHOSERVER_PORT": "abc"}))


def test_an_unknown_banner_placeholder_is_an_error():
    message = one_line(echoserver("--port", "0", "--banner", "{foo} on {hostname}"))
    assert "{foo}" in message and "{hostname}" in message


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_certificate_that_cannot_be_used_is_named(tmp_path, content):
    cert = tmp_path / "server.pem"
    if content is not None:
        cert.write_text(content)
    message = one_line(echoserver("--port", "0", "--tls-cert", str(cert), "--tls-key", str(cert)))
    assert str(cert) in message


def test_a_missing_certificate_is_reported_before_the_port(tmp_path):
    """Even when the port is taken, the missing file is what the person hears about first."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        message = one_line(
            echoserver(
                "--port", str(port), "--tls-cert", str(tmp_path / "no.pem"), "--tls-key", str(tmp_path / "no.pem")
            )
        )
    assert "no.pem does not exist" in message and "in use" not in message


def test_an_unresolvable_metrics_host_is_named():
    message = one_line(echoserver("--port", "0", "--metrics-port", "0", "--metrics-host", "no-such-host.invalid"))
    assert "--metrics-host 'no-such-host.invalid' does not resolve" in message and "Errno" not in message
