"""No single slow peer may hold a connection slot beyond a documented deadline, on any backend.

The slow-peer matrix of docs/limits.md, checked: for each phase of a
connection, a real socket driven by the test plays the attacker (it trickles a
byte now and then, or never reads), and the test measures how long the server
keeps the connection. Each phase's deadline is total: trickling does not
extend it. The options are set small so that the whole matrix runs in seconds.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from echoserver.backends import REGISTRY
from echoserver.backends.closing import LINGER_SECONDS
from echoserver.sansio.proxy_protocol import encode_v1, encode_v2
from echoserver.spawn import ServerProcess
from support import connect, recv_exactly

MARGIN = 2.5  # seconds of scheduling slack on a loaded 2-core machine; far below what an attacker got before
TRICKLE_EVERY = 0.2  # the attacker's pace: well inside every per-read timeout below
SHORT = 0.6  # the deadline the tests configure, in seconds


def client_hello() -> bytes:
    """The first flight of a real TLS client, to be trickled byte by byte."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    tls = context.wrap_bio(incoming, outgoing, server_side=False)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def held_for(sock: socket.socket, trickle: bytes, limit: float = 20.0) -> float:
    """Send ``trickle`` a byte every TRICKLE_EVERY s (an empty one: just wait) until the server has let go
    of the connection; seconds from the call until then. Fails if it still holds it after ``limit``.

    A FIN from the server is not the end while we still send: a server that
    lingers keeps reading (and holds the slot) until it closes, and only then
    does the kernel answer our next byte with an RST.
    """
    started = time.monotonic()
    position = 0
    finished = False  # the server sent its FIN
    try:
        while time.monotonic() - started < limit:
            if position < len(trickle):
                sock.send(trickle[position : position + 1])
                position += 1
            elif finished:
                return time.monotonic() - started
            if finished:
                time.sleep(TRICKLE_EVERY)  # the pace of the trickle; readiness is not what we wait for
                sock.recv(65536)  # b"" until our byte has drawn the RST of a closed socket
                continue
            readable, _, _ = select.select([sock], [], [], TRICKLE_EVERY)
            if readable and not sock.recv(65536):
                finished = True
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started
    pytest.fail(f"the server still holds the connection after {limit}s")


def never_reads(sock: socket.socket, limit: float = 20.0) -> float:
    """Send without ever reading until the server gives up on us; seconds until then."""
    started = time.monotonic()
    sock.setblocking(False)
    chunk = b"1234567\n" * 8192  # whole lines, short enough for any --max-line the tests set
    while time.monotonic() - started < limit:
        try:
            sock.send(chunk)
        except BlockingIOError:
            select.select([], [sock], [sock], 0.05)
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
    pytest.fail(f"the server still holds the connection after {limit}s")


BACKEND_NAMES = [
    pytest.param(name, id=name, marks=() if spec.available else pytest.mark.skip(reason=spec.why_unavailable()))
    for name, spec in REGISTRY.items()
]


@pytest.fixture(scope="module")
def servers(tls_files):
    """``servers(backend, kind)``: one server per backend and kind for the whole module (starts cost seconds)."""
    tls = ("--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"])
    kinds = {
        "plain": ("--idle-timeout", str(SHORT), "--handler", "line", "--max-line", "8"),
        "proxy": ("--proxy-protocol", "required", "--header-timeout", str(SHORT), "--idle-timeout", "60"),
        "tls": (
            *tls,
            "--tls-handshake-timeout",
            str(SHORT),
            "--proxy-protocol",
            "optional",
            "--log-level",
            "debug",
            "--metrics-port",
            "0",
        ),
        "untrusted": ("--proxy-protocol", "optional", "--proxy-trusted", "10.0.0.0/8"),
        "untrusted-required": ("--proxy-protocol", "required", "--proxy-trusted", "192.0.2.0/24,2001:db8::/32"),
    }
    started: dict[tuple[str, str], ServerProcess] = {}

    def get(backend: str, kind: str) -> ServerProcess:
        if (backend, kind) not in started:
            started[backend, kind] = ServerProcess(
                "--backend", backend, "--grace", "1", *kinds[kind], ready_timeout=60
            ).start()
        return started[backend, kind]

    yield get
    for server in started.values():
        try:
            server.stop(timeout=15)
        finally:
            server.kill()


# -- the matrix: (phase, backend) -> the longest one peer holds a slot ----------------


def slow_peers(get, backend: str) -> dict:
    """Each phase's attacker, as (bound in seconds, a function returning how long it held its connection)."""
    hello = client_hello()  # made first: the server's clock starts at the connect, not after this

    def header_phase() -> float:
        with connect(get(backend, "proxy").address) as sock:
            return held_for(sock, encode_v1(("192.0.2.1", 1111), ("192.0.2.2", 2222)))

    def handshake_phase() -> float:
        with connect(get(backend, "tls").address) as sock:
            return held_for(sock, hello)

    def silent() -> float:
        with connect(get(backend, "plain").address) as sock:
            return held_for(sock, b"")

    def non_reader() -> float:
        with connect(get(backend, "plain").address) as sock:
            return never_reads(sock)

    def drain_after(server_kind: str, opening: bytes):
        def phase() -> float:
            with connect(get(backend, server_kind).address) as sock:
                sock.sendall(opening)
                # Trickling a byte every 0.2 s, far inside any per-read timeout, must not keep it open.
                return held_for(sock, b"y" * 200)

        return phase

    return {
        "PROXY header (--header-timeout)": (SHORT, header_phase),
        "TLS handshake (--tls-handshake-timeout)": (SHORT, handshake_phase),
        "reading, silent peer (--idle-timeout)": (SHORT, silent),
        "writing to a non-reader (--idle-timeout)": (SHORT + 1.0, non_reader),  # +1: filling the kernel buffers
        "drain after a too long line": (LINGER_SECONDS, drain_after("plain", b"x" * 20 + b"\n")),
        "drain after a bad PROXY header": (LINGER_SECONDS, drain_after("proxy", b"GARBAGE\r\n")),
    }


def good_clients(servers, backend: str, ca) -> float:
    """One well-behaved client on each server; the slowest round trip, in seconds."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    header = encode_v2(("203.0.113.7", 5555), ("192.0.2.10", 443))
    slowest = 0.0
    for kind in ("plain", "proxy", "tls"):
        started = time.monotonic()
        with connect(servers(backend, kind).address) as raw:
            raw.settimeout(10)
            if kind == "proxy":
                raw.sendall(header)
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if kind == "tls" else raw
            sock.sendall(b"good\n")
            assert recv_exactly(sock, 5) == b"good\n"
        slowest = max(slowest, time.monotonic() - started)
    return slowest


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_slow_peer_matrix(servers, backend, ca) -> None:
    """Every phase's attacker at once, against one backend: each is cut within its deadline, none sooner
    than the deadlines that are configured (it is the deadline that cuts it, not an accident), and
    meanwhile a good client on each server is served at once: no slow peer blocks the accept loop."""
    phases = slow_peers(servers, backend)
    for name in ("proxy", "tls", "plain"):
        servers(backend, name)  # started before the clocks run
    with ThreadPoolExecutor(len(phases)) as pool:
        futures = {phase: pool.submit(attack) for phase, (_, attack) in phases.items()}
        assert good_clients(servers, backend, ca) < MARGIN  # while the attackers still hold their connections
        held = {phase: future.result() for phase, future in futures.items()}
    print(backend, {phase: round(seconds, 2) for phase, seconds in held.items()})
    for phase, (bound, _) in phases.items():
        assert held[phase] <= bound + MARGIN, (phase, held)
        if "drain" not in phase and "non-reader" not in phase:
            assert held[phase] >= bound * 0.8, (phase, held)
    # A handshake that ran out of time is counted as such, not as an idle connection.
    tls_counters = counters(servers(backend, "tls"))
    assert tls_counters['echoserver_errors_total{kind="tls_timeout"}'] == 1
    assert tls_counters["echoserver_connections_idle_closed_total"] == 0


# -- the PROXY header in clear, then TLS --------------------------------------------


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("encode", [encode_v1, encode_v2], ids=["v1", "v2"])
def test_proxy_header_in_clear_then_tls_as_haproxy_sends_it(servers, backend, ca, encode) -> None:
    server = servers(backend, "tls")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    payload = b"inside TLS, behind a proxy"
    port = 40000 + encode.__name__.endswith("v2")
    with connect(server.address) as raw:
        raw.sendall(encode(("203.0.113.7", port), ("192.0.2.10", 443)))  # before the ClientHello
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(payload)
            assert recv_exactly(sock, len(payload)) == payload
    assert wait_for_text(server, f"was 203.0.113.7:{port} behind a proxy")


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_header_and_client_hello_in_one_segment(servers, backend, ca) -> None:
    """What a proxy that writes header and ClientHello together sends: the header must not eat the hello."""
    server = servers(backend, "tls")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with connect(server.address) as raw:
        raw.settimeout(10)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        raw.sendall(encode_v2(("203.0.113.7", 5555), ("192.0.2.10", 443)) + outgoing.read())
        while True:
            incoming.write(raw.recv(65536))
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
        tls.write(b"together")
        raw.sendall(outgoing.read())
        echoed = b""
        while len(echoed) < 8:
            incoming.write(raw.recv(65536))
            try:
                echoed += tls.read(100)
            except ssl.SSLWantReadError:
                continue
        assert echoed == b"together"


# -- who may send a PROXY header ------------------------------------------------------


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_a_header_from_an_untrusted_peer_is_refused_plain_clients_still_served(servers, backend) -> None:
    server = servers(backend, "untrusted")
    with connect(server.address) as spoofer:
        spoofer.settimeout(10)
        spoofer.sendall(encode_v1(("198.51.100.1", 1), ("192.0.2.2", 2)) + b"claims to be someone else")
        assert read_until_closed(spoofer) == b""
    with connect(server.address) as plain:
        plain.sendall(b"plain")
        assert recv_exactly(plain, 5) == b"plain"
    assert wait_for_text(server, "not in --proxy-trusted")


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_required_mode_refuses_every_untrusted_peer(servers, backend) -> None:
    server = servers(backend, "untrusted-required")
    with connect(server.address) as sock:
        sock.settimeout(10)
        sock.sendall(encode_v2(("198.51.100.1", 1), ("192.0.2.2", 2)) + b"payload")
        assert read_until_closed(sock) == b""
    assert wait_for_text(server, "is not in --proxy-trusted")


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def counters(server) -> dict[str, float]:
    """The server's Prometheus samples, by name and labels as the text format writes them."""
    url = re.search(r"metrics on (http://\S+)/metrics", server.stderr).group(1)
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    }


def wait_for_text(server, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while text not in server.stderr:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
