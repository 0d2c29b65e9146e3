"""Every backend echoes exactly, concurrently, and survives what clients do to it."""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import connect, recv_exactly, recv_until_eof, round_trip_time

pytestmark = pytest.mark.freethreaded  # conformance: see conftest.py

MiB = 1 << 20


def exchange(sock: socket.socket, payload: bytes, chunk_sizes: list[int]) -> bytes:
    """Send ``payload`` in the given chunk sizes while a thread reads the echo concurrently.

    Reading while writing matters: a client that writes 4 MiB before reading
    would deadlock against any correct server once both kernels' buffers fill.
    """
    received = bytearray()

    def read() -> None:
        while len(received) < len(payload):
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    offset, sizes = 0, iter(chunk_sizes)
    while offset < len(payload):
        size = next(sizes, len(payload) - offset)
        sock.sendall(payload[offset : offset + size])
        offset += size
    reader.join(30)
    return bytes(received)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_exact_echo_under_random_chunking(server, data) -> None:
    size = data.draw(st.one_of(st.integers(1, 4096), st.integers(1, 4 * MiB)), label="size")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    chunk_sizes = data.draw(st.lists(st.integers(1, 256 * 1024), min_size=1, max_size=40), label="chunks")
    payload = random.Random(seed).randbytes(size)
    with connect(server.address) as sock:
        assert exchange(sock, payload, chunk_sizes) == payload


def test_largest_payload_round_trips(server) -> None:
    payload = os.urandom(4 * MiB)
    with connect(server.address) as sock:
        assert exchange(sock, payload, [MiB // 3] * 20) == payload


def test_fifty_concurrent_clients_two_hundred_messages_each(server) -> None:
    failures: list[str] = []

    def client(index: int) -> None:
        rng = random.Random(index)
        try:
            with connect(server.address) as sock:
                for n in range(200):
                    message = struct.pack("!II", index, n) + rng.randbytes(rng.randint(1, 512))
                    sock.sendall(message)
                    echoed = recv_exactly(sock, len(message))
                    if echoed != message:
                        failures.append(f"client {index} message {n}: {len(echoed)} bytes, differs")
                        return
        except OSError as exc:
            failures.append(f"client {index}: {exc!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []


def test_half_close_echoes_everything_then_closes(server) -> None:
    payload = os.urandom(300_000)
    with connect(server.address) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == payload


def test_a_client_that_resets_mid_stream_does_not_disturb_others(server) -> None:
    with connect(server.address) as steady:
        steady.sendall(b"before")
        assert recv_exactly(steady, 6) == b"before"
        for _ in range(10):
            rude = connect(server.address)
            rude.sendall(os.urandom(200_000))  # more than is read back: the reset discards it
            rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            rude.close()  # linger 0: RST instead of FIN
        payload = os.urandom(100_000)
        assert exchange(steady, payload, [4096] * 30) == payload
    with connect(server.address) as fresh:
        fresh.sendall(b"after")
        assert recv_exactly(fresh, 5) == b"after"


def test_ipv6_loopback(backend, start_server) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured")
    server = start_server("--backend", backend, "--host", "::1")
    assert server.host == "::1"
    with connect(("::1", server.port)) as sock:
        assert sock.family == socket.AF_INET6
        sock.sendall(b"over ipv6")
        assert recv_exactly(sock, 9) == b"over ipv6"


def test_upper_handler(backend, start_server) -> None:
    server = start_server("--backend", backend, "--handler", "upper")
    with connect(server.address) as sock:
        message = b"hello, World! \xc3\xa9 123\n"
        sock.sendall(message)
        assert recv_exactly(sock, len(message)) == b"HELLO, WORLD! \xc3\xa9 123\n"


def test_line_handler_echoes_whole_lines_and_refuses_long_ones(backend, start_server) -> None:
    server = start_server("--backend", backend, "--handler", "line", "--max-line", "16")
    with connect(server.address) as sock:
        sock.sendall(b"one\ntw")
        assert recv_exactly(sock, 4) == b"one\n"
        sock.sendall(b"o\nthree")
        assert recv_exactly(sock, 4) == b"two\n"
        sock.sendall(b"\n")
        assert recv_exactly(sock, 6) == b"three\n"
        sock.sendall(b"x" * 40 + b"\n")
        reply = recv_until_eof(sock)
        assert reply.startswith(b"ERROR line longer than 16 bytes")


def test_line_handler_echoes_the_valid_lines_sent_with_an_overlong_one(backend, start_server) -> None:
    server = start_server("--backend", backend, "--handler", "line", "--max-line", "8")
    with connect(server.address) as sock:
        sock.sendall(b"one\ntwo\n" + b"x" * 20 + b"\nnever\n")  # one write: most likely one read
        assert recv_until_eof(sock) == b"one\ntwo\nERROR line longer than 8 bytes\n"


def test_io_delay_shows_in_the_round_trip(backend, start_server) -> None:
    server = start_server("--backend", backend, "--io-delay", "50")
    assert round_trip_time(server.address) >= 0.045


def test_io_delay_does_not_serialise_clients(backend, start_server) -> None:
    """Ten clients each waiting 200 ms at once finish in far less than 10 x 200 ms."""
    server = start_server("--backend", backend, "--io-delay", "200")
    socks = [connect(server.address) for _ in range(10)]
    started = time.perf_counter()
    for sock in socks:
        sock.sendall(b"x")
    for sock in socks:
        assert recv_exactly(sock, 1) == b"x"
        sock.close()
    assert time.perf_counter() - started < 1.5


def test_cpu_work_is_done_per_message(backend, start_server) -> None:
    light = start_server("--backend", backend)
    heavy = start_server("--backend", backend, "--cpu-work", "2000000")
    assert round_trip_time(heavy.address) > round_trip_time(light.address) + 0.02


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="CPython 3.11's warm-up rule")
def test_loops_entered_once_per_process_end_in_an_unconditional_jump_back() -> None:
    """A fork child enters the echo loop once: on 3.11 only an unconditional jump back warms it up.

    A loop ending in a conditional jump back (``while data := recv(size):``) ran
    unspecialised in every child, which cost ``fork`` ~6% of its throughput.
    """
    import dis

    from echoclients.load.classic import BlockingWorker
    from echoserver.backends.stream import BlockingConnection

    for function in (BlockingConnection._echo, BlockingWorker.loop):
        backward = [i.opname for i in dis.get_instructions(function) if "BACKWARD" in i.opname]
        assert backward and set(backward) == {"JUMP_BACKWARD"}, (function.__qualname__, backward)
