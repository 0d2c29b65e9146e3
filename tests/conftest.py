"""Shared fixtures: every backend-parametrised test runs once per installed backend.

``ECHOSERVER_TEST_PYTHON`` (an interpreter, with options: ``"/venv-ft/bin/python -X gil=1"``)
makes the server-starting fixtures run servers under that interpreter instead of
this one, and asks it which backends it can run; ``pytest -m freethreaded`` so
runs the conformance tests against a free-threaded build (see docs/gil.md).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator

import pytest

from echoserver.backends import REGISTRY
from echoserver.spawn import ServerProcess

BACKENDS = list(REGISTRY)
SERVER_PYTHON = shlex.split(os.environ.get("ECHOSERVER_TEST_PYTHON", ""))


def _unavailable_under(python: list[str]) -> dict[str, str]:
    """``{backend: reason}`` as that interpreter's ``--list-backends`` says; a broken one fails loudly."""
    proc = subprocess.run([*python, "-m", "echoserver", "--list-backends"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise pytest.UsageError(
            f"ECHOSERVER_TEST_PYTHON={shlex.join(python)} cannot run echoserver:\n{proc.stderr.strip()}"
        )
    reasons = {}
    for line in proc.stdout.splitlines():
        name, _, rest = line.partition(" ")
        if name in REGISTRY and rest.split()[0] == "unavailable":
            reasons[name] = rest.partition("  [")[2][:-1]
    return reasons


UNAVAILABLE = (
    _unavailable_under(SERVER_PYTHON)
    if SERVER_PYTHON
    else {name: spec.why_unavailable() for name, spec in REGISTRY.items() if not spec.available}
)


def backend_params() -> list:
    """Every registered backend; one the server's interpreter cannot run is skipped, visibly."""
    return [
        pytest.param(name, id=name, marks=pytest.mark.skip(reason=UNAVAILABLE[name]) if name in UNAVAILABLE else ())
        for name in REGISTRY
    ]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` means one worker where the Docker tests must run (CI): there, the private engine
    once died mid-run while a second worker ran the process-heavy tests beside it, a cause not yet
    found. Elsewhere, xdist's default (one worker per CPU)."""
    return 1 if os.environ.get("ECHOSERVER_DOCKER_REQUIRED") == "1" else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the Docker tests share one worker: they bring up stacks that must not overlap."""
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.xdist_group("docker"))


@pytest.fixture(params=backend_params(), scope="module")
def backend(request) -> str:
    return request.param


@pytest.fixture
def served_backend():
    """``served_backend(name)``: the name, or a visible skip if the servers' interpreter cannot run it."""

    def check(name: str) -> str:
        if name in UNAVAILABLE:
            pytest.skip(UNAVAILABLE[name])
        return name

    return check


@pytest.fixture
def start_server():
    """``start_server("--backend", name, ...)`` -> a ready :class:`ServerProcess`, stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs) -> ServerProcess:
        kwargs.setdefault("python", SERVER_PYTHON or None)
        server = ServerProcess(*args, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        try:
            server.stop(timeout=15)
        finally:
            server.kill()


@pytest.fixture(scope="module")
def server(backend) -> Iterator[ServerProcess]:
    """A plain echo server of the parametrised backend, on a free port, shared by a module's tests.

    Only for tests that leave it as they found it (connect, echo, disconnect); a test that
    signals, limits or counts on its server starts its own with ``start_server``.
    """
    with ServerProcess("--backend", backend, "--grace", "3", python=SERVER_PYTHON or None) as shared:
        yield shared


@pytest.fixture(scope="session")
def ca():
    """A throwaway certificate authority (trustme), for the TLS tests."""
    import trustme

    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(ca, tmp_path_factory) -> dict[str, str]:
    """``cert``, ``key`` (for 127.0.0.1 and localhost) and ``ca``: PEM files signed by :func:`ca`."""
    folder = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"cert": folder / "cert.pem", "key": folder / "key.pem", "ca": folder / "ca.pem"}
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    cert.private_key_pem.write_to_path(files["key"])
    ca.cert_pem.write_to_path(files["ca"])
    return {name: str(path) for name, path in files.items()}
