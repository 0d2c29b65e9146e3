"""Shared fixtures: every backend-parametrised test runs once per installed backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from echoserver.backends import REGISTRY
from echoserver.spawn import ServerProcess

BACKENDS = list(REGISTRY)


def backend_params() -> list:
    """Every registered backend; one whose package is missing is skipped, visibly."""
    return [
        pytest.param(name, id=name, marks=() if spec.available else
                     pytest.mark.skip(reason=spec.why_unavailable()))
        for name, spec in REGISTRY.items()
    ]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the Docker tests share one worker: they bring up stacks that must not overlap."""
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.xdist_group("docker"))


@pytest.fixture(params=backend_params(), scope="module")
def backend(request) -> str:
    return request.param


@pytest.fixture
def start_server():
    """``start_server("--backend", name, ...)`` -> a ready :class:`ServerProcess`, stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs) -> ServerProcess:
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
    with ServerProcess("--backend", backend, "--grace", "3") as shared:
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
