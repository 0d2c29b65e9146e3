"""Limits and failure behaviour: every backend keeps serving and loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import psutil
import pytest

from echoserver.processes.cpus import available_cpus
from support import (
    connect,
    connection_processes,
    echo_once,
    recv_exactly,
    recv_until_eof,
    server_socket,
    stalled_writer,
    unread_bytes,
    wait_for,
)

pytestmark = pytest.mark.freethreaded  # conformance: see conftest.py

MiB = 1 << 20


def tree_memory(pid: int) -> int:
    """Bytes the server holds: its RSS plus the private memory of its descendants (fork: fork server, children)."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_full_info().uss
        except psutil.NoSuchProcess:
            pass
    return total


# -- graceful shutdown ---------------------------------------------------------


def test_sigterm_finishes_in_flight_work_closes_idle_clients_and_exits_zero(backend, start_server) -> None:
    server = start_server("--backend", backend, "--io-delay", "600", "--grace", "20")
    idle = connect(server.address)
    echo_once(server.address)  # the server is serving; idle has been accepted by now
    busy = connect(server.address)
    payload = os.urandom(10_000)
    busy.sendall(payload)
    # The server has read the request, so the signal lands in the middle of its 600 ms.
    assert wait_for(lambda: unread_bytes(server.port, busy.getsockname()[1]) == 0)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    busy.shutdown(socket.SHUT_WR)
    assert recv_until_eof(busy) == payload
    assert recv_until_eof(idle) == b""
    assert server.proc.wait(15) == 0
    assert time.monotonic() - started < 10, "drained long before --grace"
    with pytest.raises(OSError):
        connect(server.address, timeout=0.5)


def test_grace_period_ends_with_a_forced_close_and_exit_zero(backend, start_server) -> None:
    server = start_server("--backend", backend, "--grace", "1")
    stalled = stalled_writer(server.address)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    # Not before the grace period as a rule, but the kernel may cut a connection whose
    # read side was shut while its peer still pushes data; never much after it.
    assert time.monotonic() - started < 1 + 5
    stalled.close()


def test_a_second_signal_stops_at_once(backend, start_server) -> None:
    server = start_server("--backend", backend, "--grace", "60")
    stalled = stalled_writer(server.address)
    server.signal(signal.SIGTERM)
    assert wait_for(lambda: "draining" in server.stderr)
    started = time.monotonic()
    server.signal(signal.SIGINT)
    assert server.proc.wait(15) == 0
    assert time.monotonic() - started < 8
    stalled.close()


def test_threadpool_does_not_hang_on_queued_connections(start_server) -> None:
    server = start_server("--backend", "threadpool", "--pool-size", "2", "--grace", "30")
    held = [connect(server.address) for _ in range(2)]
    for sock in held:
        echo_via(sock, b"busy")
    queued = [connect(server.address) for _ in range(5)]
    queued[0].sendall(b"waiting")
    # Accepted and queued for the pool (its socket is one of the server's descriptors: a connection
    # still in the listen backlog is reset when the listener closes), its bytes unread in the kernel.
    assert wait_for(lambda: accepted_unread(server, queued[0]) == 7)
    server.signal(signal.SIGTERM)
    got = recv_until_eof(queued[0])
    assert got == b"waiting"  # served as the pool drains, then closed
    assert server.proc.wait(15) == 0
    for sock in held + queued:
        sock.close()


def accepted_unread(server, client: socket.socket) -> int | None:
    """Unread bytes on the server's end of ``client``'s connection, once the server has accepted it."""
    found = server_socket(server.port, client.getsockname()[1])
    if not found:
        return None
    unread, inode = found
    owned = {
        os.readlink(f"/proc/{server.pid}/fd/{fd}")
        for fd in os.listdir(f"/proc/{server.pid}/fd")
        if os.path.islink(f"/proc/{server.pid}/fd/{fd}")
    }
    return unread if f"socket:[{inode}]" in owned else None


def echo_via(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload


# -- limits --------------------------------------------------------------------


def test_connection_limit_makes_the_next_client_wait_in_the_backlog(backend, start_server) -> None:
    server = start_server("--backend", backend, "--max-connections", "3")
    served = [connect(server.address) for _ in range(3)]
    for sock in served:
        echo_via(sock, b"in")
    waiting = connect(server.address)  # the kernel completes the handshake...
    waiting.sendall(b"later")
    waiting.settimeout(0.5)
    with pytest.raises(TimeoutError):  # ...but the server does not read it while full
        waiting.recv(5)
    served[0].close()
    waiting.settimeout(10)
    assert recv_exactly(waiting, 5) == b"later"  # and serves it, whole, once a slot frees
    for sock in served[1:] + [waiting]:
        sock.close()


def test_idle_timeout_closes_silent_clients_only(backend, start_server) -> None:
    server = start_server("--backend", backend, "--idle-timeout", "0.5")
    silent = connect(server.address)
    active = connect(server.address)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        echo_via(active, b"still here")
        time.sleep(0.05)
    silent.settimeout(5)
    assert silent.recv(1) == b""  # closed by the server
    echo_via(active, b"untouched")
    active.close()


def test_a_client_that_never_reads_cannot_make_the_server_buffer_without_bound(backend, start_server) -> None:
    server = start_server("--backend", backend)
    echo_once(server.address)
    baseline = tree_memory(server.pid)
    hog = connect(server.address)
    hog.settimeout(0.25)
    chunk = os.urandom(MiB)
    sent, peak, stalls = 0, baseline, 0
    deadline = time.monotonic() + 8
    while sent < 200 * MiB and time.monotonic() < deadline and stalls < 8:
        try:
            sent += hog.send(chunk)
            stalls = 0
        except TimeoutError:
            stalls += 1  # the server has stopped reading from us: that is the point
        peak = max(peak, tree_memory(server.pid))
        if sent and sent % (8 * MiB) < MiB:
            echo_once(server.address)  # everyone else is still served
    peak = max(peak, tree_memory(server.pid))
    echo_once(server.address)
    hog.close()
    assert peak - baseline < 16 * MiB, f"grew by {(peak - baseline) / MiB:.1f} MiB after {sent / MiB:.0f} MiB sent"


def test_running_out_of_descriptors_neither_crashes_nor_spins(backend, start_server) -> None:
    server = start_server("--backend", backend, "--log-level", "warning")
    process = psutil.Process(server.pid)
    in_use = process.num_fds()
    soft, hard = process.rlimit(psutil.RLIMIT_NOFILE)
    process.rlimit(psutil.RLIMIT_NOFILE, (in_use + 8, hard))
    clients = []
    for _ in range(20):  # more than the server can accept
        sock = connect(server.address)
        clients.append(sock)
    if backend == "fork":
        # The parent closes its copy of each connection as soon as a child has it, so it never
        # runs out: every client is served while all of them are open, and nothing is logged.
        for sock in clients:
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
        assert process.num_fds() <= in_use + 8
        assert "accept() failed" not in server.stderr, server.stderr
    else:
        assert wait_for(lambda: "accept() failed" in server.stderr, timeout=5), server.stderr
    busy = process.cpu_times()
    time.sleep(1.0)  # measuring CPU use over a second, not waiting for readiness
    spent = sum(process.cpu_times()[:2]) - sum(busy[:2])
    assert spent < 0.5, f"{spent:.2f} s of CPU in 1 s while out of descriptors"
    for sock in clients:
        sock.close()
    process.rlimit(psutil.RLIMIT_NOFILE, (soft, hard))
    echo_once(server.address)
    accept_loops = available_cpus() if backend == "interpreters" else 1  # each interpreter accepts on its own
    assert server.stderr.count("pausing new connections") <= accept_loops
    assert "Traceback" not in server.stderr


def test_fork_children_do_not_outlive_a_killed_parent(start_server) -> None:
    server = start_server("--backend", "fork")
    sock = connect(server.address)
    echo_via(sock, b"x")
    children = psutil.Process(server.pid).children(recursive=True)  # the fork server and the connection's process
    assert len(connection_processes(server.pid)) == 1
    server.signal(signal.SIGKILL)
    server.proc.wait(5)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    sock.close()


def test_abrupt_peers_leave_no_traceback_and_do_not_disturb_others(backend, start_server) -> None:
    server = start_server("--backend", backend)
    steady = connect(server.address)
    rude_behaviour = [
        lambda s: s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0"),  # RST on close
        lambda s: s.shutdown(socket.SHUT_WR),  # half-close, never read
        lambda s: s.sendall(os.urandom(3 * MiB // 2)),  # vanishes mid-write
        lambda s: None,  # connects and leaves without a word
    ]
    for round_ in range(5):
        for behave in rude_behaviour:
            sock = connect(server.address)
            sock.sendall(b"abc" * 1000)
            behave(sock)
            sock.close()
        echo_via(steady, b"round %d" % round_)
    steady.close()
    assert server.stop() == 0
    assert "Traceback" not in server.stderr
    assert " WARNING " not in server.stderr and " ERROR " not in server.stderr, server.stderr


def test_thread_stacks_are_released_once_clients_leave(start_server) -> None:
    """Hostile clients included: no thread outlives its connection."""
    server = start_server("--backend", "thread")
    process = psutil.Process(server.pid)
    baseline = process.num_threads()
    threads = [threading.Thread(target=lambda: stalled_writer(server.address).close()) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert wait_for(lambda: process.num_threads() == baseline), (process.num_threads(), baseline)
