"""The command line: clear one-line errors, exit codes, the ready line, environment variables."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import sysconfig

import pytest

from echoserver.backends import REGISTRY, available_names
from echoserver.spawn import ServerProcess
from support import assert_one_line_error, connect, recv_exactly, run_cli


def without_bind_privilege() -> tuple[str, ...]:
    """A command prefix under which port 80 is out of reach, or a skip where there is none.

    Root keeps its uid but loses CAP_NET_BIND_SERVICE (``setpriv`` drops it from
    the bounding set), so the test runs in CI, which runs as root.
    """
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as start:
        if int(start.read()) <= 80:
            pytest.skip("this kernel lets anyone bind port 80 (net.ipv4.ip_unprivileged_port_start)")
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed to drop the privilege")
    return ("setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service", "--")


def test_port_already_in_use_is_one_line_and_nonzero(backend) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--backend", backend, "--port", str(port))
    assert_one_line_error(result, 2, "already in use", str(port), "--port")


def test_unknown_backend_lists_the_available_ones() -> None:
    result = run_cli("--backend", "carrier-pigeon")
    assert_one_line_error(result, 2, "carrier-pigeon", *available_names())


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--port", "70000"], "--port"),
        (["--port", "-1"], "--port"),
        (["--port", "eighty"], "--port"),
        (["--pool-size", "0"], "--pool-size"),
        (["--max-line", "lots"], "--max-line"),
        (["--handler", "shout"], "--handler"),
        (["--host", "no-such-host.invalid"], "cannot resolve"),
        (["--host", "192.0.2.1"], "not an address of this machine"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_option_values_are_one_line_usage_errors(args, fragment) -> None:
    assert_one_line_error(run_cli(*args), 2, fragment)


def test_privileged_port_without_rights() -> None:
    assert_one_line_error(
        run_cli("--port", "80", prefix=without_bind_privilege()), 2, "permission denied", "--port 1024 or above"
    )


def test_port_zero_prints_the_real_port(backend) -> None:
    with ServerProcess("--backend", backend) as server:
        assert server.port > 0
        assert f"listening on 127.0.0.1:{server.port} backend={backend}" in server.stderr
        with connect(server.address) as sock:
            sock.sendall(b"real port")
            assert recv_exactly(sock, 9) == b"real port"
        assert server.stop() == 0


def test_options_come_from_the_environment() -> None:
    env = {"ECHOSERVER_BACKEND": "thread", "ECHOSERVER_HANDLER": "upper"}
    with ServerProcess(env=env) as server:
        assert server.backend == "thread"
        with connect(server.address) as sock:
            sock.sendall(b"env")
            assert recv_exactly(sock, 3) == b"ENV"


def test_environment_values_are_validated_too() -> None:
    assert_one_line_error(run_cli(env={"ECHOSERVER_PORT": "99999"}), 2, "--port")


def test_port_comes_from_PORT_unless_ECHOSERVER_PORT_is_set() -> None:
    # Out-of-range values show which variable was read without binding anything.
    assert_one_line_error(run_cli(env={"PORT": "99999"}), 2, "--port", "99999")
    assert_one_line_error(run_cli(env={"PORT": "99999", "ECHOSERVER_PORT": "99998"}), 2, "99998")
    assert_one_line_error(run_cli(env={"PORT": "http"}), 2, "PORT is not a port number")


def test_list_backends_says_which_are_available() -> None:
    result = run_cli("--list-backends")
    assert result.returncode == 0
    *rows, python = result.stdout.splitlines()
    assert [line.split()[0] for line in rows] == list(REGISTRY)
    for line, spec in zip(rows, REGISTRY.values()):
        assert line.split()[1] == ("available" if spec.available else "unavailable")
        assert spec.available or f"[{spec.why_unavailable()}]" in line
    # The interpreter and its GIL state, read the way the ready line reads them.
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        assert python == f"python: {platform.python_version()} (default build), GIL on"
    else:
        assert python.startswith(f"python: {platform.python_version()} (free-threaded build), GIL ")


def test_help_mentions_every_option_and_its_environment_variable() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for option in (
        "--backend",
        "--port",
        "--handler",
        "--cpu-work",
        "--io-delay",
        "--pool-size",
        "--max-children",
        "--grace",
        "ECHOSERVER_PORT",
    ):
        assert option in result.stdout
