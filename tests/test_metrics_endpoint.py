"""The metrics endpoint under hostile peers: it never stalls, never grows, never starves the echo service.

The unit tests drive :class:`HttpEndpoint` in-process with short deadlines; the
end-to-end ones attack a real server's metrics port and check that the
supervisor, the metrics and the echo listener all keep working.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request

import psutil
import pytest

from echoserver.observability.httpd import HttpEndpoint, Response
from support import connect, recv_until_eof, wait_for


def _route(method: str, path: str) -> Response:
    if path == "/hello":
        return Response("200 OK", "text/plain", b"hello\n")
    return Response("404 Not Found", "text/plain", b"nope\n")


@pytest.fixture
def endpoint():
    started = HttpEndpoint("127.0.0.1", 0, _route, max_connections=4, timeout=0.5).start()
    yield started
    started.stop()


def _get(port: int, request: bytes) -> bytes:
    with connect(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        return recv_until_eof(sock)


def test_answers_get_head_unknown_paths_and_methods(endpoint) -> None:
    ok = _get(endpoint.port, b"GET /hello?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\nhello\n")
    assert b"Content-Length: 6\r\n" in ok
    head = _get(endpoint.port, b"HEAD /hello HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert _get(endpoint.port, b"GET /other HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert _get(endpoint.port, b"POST /hello HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert _get(endpoint.port, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _get(endpoint.port, b"GET /" + b"x" * 9000).startswith(b"HTTP/1.1 431 ")


def test_a_trickling_peer_is_closed_at_the_total_deadline(endpoint) -> None:
    sock = connect(("127.0.0.1", endpoint.port))
    started = time.monotonic()
    closed_after = None
    for byte in b"GET /hello HTTP/1.1\r\n":  # one byte every 0.1 s: 2.1 s in all, past the 0.5 s deadline
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            closed_after = time.monotonic() - started
            break
        sock.settimeout(0.1)
        try:
            if sock.recv(100) == b"":
                closed_after = time.monotonic() - started
                break
        except TimeoutError:
            pass
    sock.close()
    assert closed_after is not None, "a peer trickling its request was never closed"
    assert closed_after < 1.5, f"closed only after {closed_after:.2f}s; the deadline is 0.5s"


def test_idle_peers_cannot_lock_out_a_scraper(endpoint) -> None:
    idle = [connect(("127.0.0.1", endpoint.port)) for _ in range(10)]  # more than its 4 slots
    assert wait_for(lambda: endpoint.open_connections == 4, timeout=2)
    assert _get(endpoint.port, b"GET /hello HTTP/1.1\r\n\r\n").endswith(b"hello\n")
    assert endpoint.open_connections <= 4
    for sock in idle:
        sock.close()


def _metrics_port(server) -> int:
    found = wait_for(lambda: re.search(r"metrics on http://\S+:(\d+)/metrics", server.stderr))
    assert found, server.stderr
    return int(found.group(1))


def test_an_idle_metrics_peer_does_not_freeze_the_supervisor(backend, start_server) -> None:
    server = start_server("--backend", backend, "--workers", "2", "--metrics-port", "0", "--grace", "2")
    port = _metrics_port(server)
    idle = connect(("127.0.0.1", port))  # connects, sends nothing, stays
    supervisor = psutil.Process(server.pid)
    workers = {child.pid for child in supervisor.children()}
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b"echoserver_connections_accepted_total" in body
    assert time.monotonic() - started < 3
    assert wait_for(lambda: len(set(c.pid for c in supervisor.children()) - workers) == 2, timeout=10), (
        "the killed workers were not replaced"
    )
    with connect(server.address) as sock:
        sock.sendall(b"still here")
        assert sock.recv(100) == b"still here"
    started = time.monotonic()
    assert server.stop(timeout=10) == 0
    assert time.monotonic() - started < 5, "SIGTERM was not acted on while a metrics peer idled"
    idle.close()


def test_idle_metrics_peers_cost_no_threads_and_never_starve_the_echo_listener(backend, start_server) -> None:
    server = start_server("--backend", backend, "--metrics-port", "0")
    port = _metrics_port(server)
    process = psutil.Process(server.pid)
    threads, in_use = process.num_threads(), process.num_fds()
    _, hard = process.rlimit(psutil.RLIMIT_NOFILE)
    process.rlimit(psutil.RLIMIT_NOFILE, (in_use + 48, hard))  # room for the endpoint's 32, and a few clients
    idle = [connect(("127.0.0.1", port)) for _ in range(120)]
    try:
        time.sleep(0.3)  # not readiness: giving the server time to accept all it will
        assert process.num_threads() <= threads + 1, "idle metrics peers cost threads"
        assert process.num_fds() <= in_use + 34, "idle metrics peers hold descriptors without bound"
        for _ in range(5):
            with connect(server.address) as sock:
                sock.sendall(b"echo me")
                assert sock.recv(100) == b"echo me"
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status == 200
    finally:
        for sock in idle:
            sock.close()
    assert "Traceback" not in server.stderr, server.stderr


def test_unknown_metrics_paths_are_404(start_server) -> None:
    server = start_server("--backend", "thread", "--metrics-port", "0")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"http://127.0.0.1:{_metrics_port(server)}/nothing-here", timeout=5)
    assert raised.value.code == 404
