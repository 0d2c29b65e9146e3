"""What people deploy an echo server for: TLS, the PROXY protocol, a banner, fault injection."""

from __future__ import annotations

import os
import socket
import ssl

import pytest
import trustme

from echoserver.sansio.proxy_protocol import encode_v1, encode_v2
from support import (
    assert_one_line_error,
    connect,
    recv_exactly,
    recv_until_eof,
    round_trip_time,
    run_cli,
    scrape,
    wait_for,
)


def tls_client(server, ca: trustme.CA, client_cert: trustme.LeafCert | None = None) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_cert is not None:
        client_cert.configure_cert(context)
    return context.wrap_socket(connect(server.address), server_hostname="127.0.0.1")


# -- TLS -----------------------------------------------------------------------


def test_tls_echo(backend, start_server, ca, tls_files) -> None:
    server = start_server("--backend", backend, "--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"])
    payload = os.urandom(200_000)
    with tls_client(server, ca) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        sock.sendall(payload)
        assert recv_exactly(sock, len(payload)) == payload
    with connect(server.address) as plain:  # a client that does not speak TLS is refused, not served
        plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            assert recv_until_eof(plain) == b""
        except ConnectionResetError:
            pass
    with tls_client(server, ca) as again:  # and the server is none the worse for it
        again.sendall(b"still")
        assert recv_exactly(again, 5) == b"still"


def test_mutual_tls_requires_a_client_certificate(backend, start_server, ca, tls_files) -> None:
    server = start_server(
        "--backend",
        backend,
        "--tls-cert",
        tls_files["cert"],
        "--tls-key",
        tls_files["key"],
        "--tls-client-ca",
        tls_files["ca"],
    )
    with tls_client(server, ca, ca.issue_cert("client@example.test")) as sock:
        sock.sendall(b"mutual")
        assert recv_exactly(sock, 6) == b"mutual"
    try:  # TLS 1.2 refuses in the handshake; 1.3 lets it finish, then the server refuses and closes
        with tls_client(server, ca) as anonymous:
            anonymous.sendall(b"x")
            assert anonymous.recv(1) == b"", "served without a client certificate"
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass


def test_missing_certificate_file_is_a_one_line_error(tmp_path) -> None:
    assert_one_line_error(
        run_cli("--port", "0", "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "k.pem")),
        2,
        "--tls-cert",
    )
    assert_one_line_error(run_cli("--tls-cert", str(tmp_path / "only.pem")), 2, "--tls-key")


# -- PROXY protocol -------------------------------------------------------------

CLIENT, BALANCER = ("203.0.113.7", 51234), ("198.51.100.1", 8080)


@pytest.mark.parametrize("encode", [encode_v1, encode_v2], ids=["v1", "v2"])
def test_proxy_header_is_read_and_only_the_payload_echoed(backend, start_server, encode) -> None:
    server = start_server("--backend", backend, "--proxy-protocol", "required", "--log-level", "debug")
    with connect(server.address) as sock:
        sock.sendall(encode(CLIENT, BALANCER) + b"payload after the header")
        assert recv_exactly(sock, 24) == b"payload after the header"
        sock.sendall(b"more")
        assert recv_exactly(sock, 4) == b"more"
    assert wait_for(lambda: "203.0.113.7:51234 behind a proxy" in server.stderr), server.stderr


def test_optional_mode_serves_plain_and_proxied_clients_on_one_port(backend, start_server) -> None:
    server = start_server("--backend", backend, "--proxy-protocol", "optional")
    with connect(server.address) as plain:
        plain.sendall(b"hi")
        assert recv_exactly(plain, 2) == b"hi"
    with connect(server.address) as proxied:
        proxied.sendall(encode_v2(CLIENT, BALANCER))
        proxied.sendall(b"via proxy")
        assert recv_exactly(proxied, 9) == b"via proxy"


def test_a_malformed_header_closes_only_that_connection(backend, start_server) -> None:
    server = start_server("--backend", backend, "--proxy-protocol", "required")
    with connect(server.address) as bystander:
        bystander.sendall(encode_v1(CLIENT, BALANCER))
        with connect(server.address) as bad:
            bad.sendall(b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\nsecret")
            assert recv_until_eof(bad) == b""
        bystander.sendall(b"unaffected")
        assert recv_exactly(bystander, 10) == b"unaffected"
    assert wait_for(lambda: "bad PROXY header" in server.stderr)
    assert "Traceback" not in server.stderr


# -- banner ---------------------------------------------------------------------


def test_banner_names_the_replica(backend, start_server) -> None:
    server = start_server("--backend", backend, "--banner", "echo from {hostname} ({backend})")
    with connect(server.address) as sock:
        expected = f"echo from {socket.gethostname()} ({backend})\n".encode()
        assert recv_exactly(sock, len(expected)) == expected
        sock.sendall(b"then echo")
        assert recv_exactly(sock, 9) == b"then echo"


# -- fault injection -------------------------------------------------------------


def test_delay_with_jitter(backend, start_server) -> None:
    server = start_server("--backend", backend, "--delay", "100:20")
    assert 0.075 <= round_trip_time(server.address, b"slow") < 2.0
    assert "fault injection on: delay 100ms+/-20ms" in server.stderr


def test_reset_probability_one_resets_every_connection(backend, start_server) -> None:
    server = start_server("--backend", backend, "--reset-probability", "1")
    for _ in range(3):
        with connect(server.address) as sock:
            sock.sendall(b"x")
            with pytest.raises(ConnectionResetError):
                sock.recv(1) or sock.recv(1)


def test_trickle_writes_slowly_but_completely(backend, start_server) -> None:
    server = start_server("--backend", backend, "--trickle", "2000")
    payload = os.urandom(800)
    assert 0.3 <= round_trip_time(server.address, payload) < 5.0


def test_max_bytes_per_connection_echoes_that_much_then_closes(backend, start_server) -> None:
    server = start_server("--backend", backend, "--max-bytes-per-connection", "100", "--metrics-port", "0")
    with connect(server.address) as sock:
        sock.sendall(b"a" * 60)
        assert recv_exactly(sock, 60) == b"a" * 60
        sock.sendall(b"b" * 60)
        assert recv_until_eof(sock) == b"b" * 40
    assert wait_for(lambda: scrape(server)["echoserver_faults_total{kind=truncated}"] == 1)
