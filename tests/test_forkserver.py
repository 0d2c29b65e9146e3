"""The fork backend's fork server: connection processes forked from a small process, with logs and counters kept.

What docs/fork-server.md promises: each connection's process is a child of the
fork server, not of the accepting process; a dead fork server is logged and
restarted while the connections it forked go on; an idle connection's process
never wakes up; its counters and its log lines still reach the main process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import psutil
import pytest

from echoserver.server import running_server
from support import (
    FORK_SERVER_NAME,
    connect,
    connection_processes,
    echo_once,
    recv_exactly,
    recv_until_eof,
    unaccepted,
    unread_bytes,
    wait_for,
    zombies,
)


def fork_server_of(pid: int) -> psutil.Process:
    (found,) = [child for child in psutil.Process(pid).children() if child.name() == FORK_SERVER_NAME]
    return found


def echo_via(sock, payload: bytes) -> None:
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload


def test_connection_processes_are_children_of_the_fork_server(start_server) -> None:
    server = start_server("--backend", "fork")
    forkserver = fork_server_of(server.pid)
    assert forkserver.cmdline()[1:3] == ["-S", "-c"]  # a fresh interpreter, not a fork of the server
    with connect(server.address) as sock:
        echo_via(sock, b"hello")
        (child,) = connection_processes(server.pid)
        assert child.ppid() == forkserver.pid
    assert wait_for(lambda: not connection_processes(server.pid) and not zombies(server.pid))


def test_a_dead_fork_server_is_restarted_and_its_connections_go_on(start_server) -> None:
    server = start_server("--backend", "fork", "--grace", "3")
    first = fork_server_of(server.pid)
    held = connect(server.address)
    echo_via(held, b"before")
    first.kill()
    assert wait_for(lambda: f"fork server {first.pid} was killed by SIGKILL" in server.stderr), server.stderr
    echo_via(held, b"after the fork server died")  # the connection's own process is untouched
    assert wait_for(lambda: "fork server restarted" in server.stderr), server.stderr
    second = fork_server_of(server.pid)
    assert second.pid != first.pid
    for i in range(5):
        echo_once(server.address, b"new %d" % i)  # new connections are served by the new one
    echo_via(held, b"still")
    held.close()
    assert wait_for(lambda: not connection_processes(server.pid) and not zombies(server.pid)), [
        (p.pid, p.status()) for p in psutil.Process(server.pid).children(recursive=True)
    ]
    assert server.stop() == 0
    assert "Traceback" not in server.stderr


def test_an_idle_connection_process_never_wakes_up(start_server) -> None:
    server = start_server("--backend", "fork", "--metrics-port", "0")
    with connect(server.address) as sock:
        echo_via(sock, b"x")
        (child,) = connection_processes(server.pid)
        assert wait_for(lambda: child.status() == psutil.STATUS_SLEEPING)
        before = child.num_ctx_switches()
        time.sleep(1.6)  # measuring wake-ups over a span that used to hold three timer ticks
        after = child.num_ctx_switches()
        assert after.voluntary - before.voluntary == 0 and after.involuntary - before.involuntary <= 1


def test_counters_of_open_connections_are_published_on_demand() -> None:
    with running_server(backend="fork", port=0) as server:
        sock = connect(server.address)
        echo_via(sock, b"a" * 300)
        echo_via(sock, b"b" * 200)
        # The client can read an echo a moment before the process serving it has counted it.
        assert wait_for(
            lambda: (
                [server.snapshot()[name] for name in ("active", "bytes_in", "bytes_out", "messages")]
                == [1, 500, 500, 2]
            )
        ), server.snapshot()
        sock.close()
        assert wait_for(lambda: server.snapshot()["closed"] == 1)
        final = server.snapshot()
        assert (final["active"], final["accepted"], final["bytes_in"]) == (0, 1, 500)


def test_connection_processes_log_through_the_main_process(start_server) -> None:
    server = start_server("--backend", "fork", "--proxy-protocol", "required", "--log-format", "json")
    with connect(server.address) as sock:
        sock.sendall(b"NOT A PROXY HEADER\r\n")
        assert sock.recv(1024) == b""
    assert wait_for(lambda: "connection process" in server.stderr)
    records = [json.loads(line) for line in server.stderr.splitlines()[1:]]
    relayed = [r for r in records if "connection process" in r["message"]]
    assert len(relayed) == 1 and relayed[0]["level"] == "warning", relayed
    assert relayed[0]["logger"] == "echoserver.connection" and "bad PROXY header" in relayed[0]["message"]


def test_sigterm_drains_connection_processes_and_leaves_no_process(start_server) -> None:
    server = start_server("--backend", "fork", "--io-delay", "300", "--grace", "5")
    sock = connect(server.address)
    sock.sendall(b"in flight")
    assert wait_for(lambda: len(connection_processes(server.pid)) == 1)
    everyone = psutil.Process(server.pid).children(recursive=True)
    server.signal(signal.SIGTERM)
    assert recv_exactly(sock, 9) == b"in flight"  # the drain lets the reply out
    sock.close()
    assert server.proc.wait(10) == 0, server.stderr
    gone, alive = psutil.wait_procs(everyone, timeout=5)
    assert alive == []


@pytest.mark.freethreaded  # where it first showed
def test_a_connection_process_the_main_process_hears_of_during_the_drain_is_drained_not_cut(start_server) -> None:
    """A connection process already serving when SIGTERM comes, whose fork the main process learns of only as it drains.

    The main process used to send such a process a SIGTERM of its own, on top of the drain's
    SIGTERM to every child: a second SIGTERM means "cut now", so the client got EOF without
    its echo. It happened by itself in CI on the free-threaded build, where a connection
    process often read its request before the fork server had reported the fork. Here the
    order is forced: the main process is stopped from handing the socket over until after
    the connection process has read the request.
    """
    server = start_server("--backend", "fork", "--io-delay", "300", "--grace", "20", "--log-level", "debug")
    echo_once(server.address)  # the fork server is up and forking
    main, forkserver = psutil.Process(server.pid), fork_server_of(server.pid)
    forkserver.suspend()
    try:
        sock = connect(server.address)
        client_port = sock.getsockname()[1]
        payload = os.urandom(10_000)
        sock.sendall(payload)
        # Accepted, handed over to the (stopped) fork server, and closed here.
        assert wait_for(lambda: unaccepted(server.port) == 0)
        assert wait_for(lambda: not [c for c in main.net_connections() if c.raddr and c.raddr.port == client_port])
        main.suspend()
        try:
            forkserver.resume()
            assert wait_for(lambda: unread_bytes(server.port, client_port) == 0)  # its process has read it
            server.signal(signal.SIGTERM)  # handled as the main process goes on, with the fork's report
        finally:
            main.resume()
    finally:
        forkserver.resume()
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(10)
    assert recv_until_eof(sock) == payload
    assert server.proc.wait(10) == 0, server.stderr
    assert "Broken pipe" not in server.stderr and "Traceback" not in server.stderr  # logged at debug level


def test_a_connection_process_past_the_grace_period_is_killed(start_server) -> None:
    server = start_server("--backend", "fork", "--io-delay", "5000", "--grace", "0.5")
    sock = connect(server.address)
    sock.sendall(b"slow")
    assert wait_for(lambda: len(connection_processes(server.pid)) == 1)
    everyone = psutil.Process(server.pid).children(recursive=True)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    server.proc.wait(10)
    assert time.monotonic() - started < 4, "the grace period was not enforced"
    assert sock.recv(16) == b""  # cut, without the reply
    sock.close()
    gone, alive = psutil.wait_procs(everyone, timeout=5)
    assert alive == []


class FakeForkServer:
    """Stands in for the fork server's reports, to replay an exact sequence."""

    def __init__(self, events) -> None:
        from echoserver.observability.stats import SlotTable

        self.table = SlotTable(4)
        self._events = events
        self.signalled: list[tuple[int, int]] = []

    def events(self):
        events, self._events = self._events, []
        return events

    def signal(self, pid: int, signum: int) -> None:
        """The real one forwards to the fork server, which signals only children it has not reaped."""
        self.signalled.append((pid, signum))


def test_a_child_gone_before_the_drain_signals_it_is_still_retired() -> None:
    """Reports read together: 'forked' and 'exited' for a child that is gone by the time a drain signals it."""
    from echoserver.backends.fork import ForkPerConnectionBackend
    from echoserver.config import ServerConfig

    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    backend = ForkPerConnectionBackend(ServerConfig(backend="fork", port=0))
    backend.forkserver = FakeForkServer([(b"F", 3, gone, 0), (b"X", 3, gone, 0)])
    backend.rows[3] = 0
    backend.stopping = True
    backend._handle_events()
    assert backend.rows == {} and backend.stats.snapshot()["closed"] == 1
    assert backend.forkserver.signalled == []  # the drain's one signal to every child reached it, or will


def test_a_stale_pid_is_never_signalled_by_the_main_process() -> None:
    """A connection process the fork server reaped frees its PID; the main process hears of it a little later.

    Had the main process signalled that PID itself (SIGUSR1 for counters, SIGTERM for the drain),
    a process that took the PID over in between would be hit: SIGUSR1's default action kills.
    Here a stranger (not a connection process) sits in a row, as a recycled PID would: it must
    survive both a counter request and the drain, while the real connection process is drained.
    """
    import subprocess

    stranger = subprocess.Popen(["sleep", "60"])
    try:
        with running_server(backend="fork", port=0, grace=2.0) as server:
            sock = connect(server.address)
            echo_via(sock, b"x" * 10)
            backend = server.backend
            assert wait_for(lambda: any(backend.rows.values()))
            real = next(pid for pid in backend.rows.values() if pid)
            spare = next(row for row in range(100) if row not in backend.rows)
            backend.rows[spare] = stranger.pid  # a row whose PID was reaped and reused (the race)
            server.snapshot()  # asks every row's PID for its counters
            time.sleep(0.2)  # give a wrongly sent SIGUSR1 time to land (nothing to wait for if it was right)
            assert stranger.poll() is None, "the main process signalled a PID that is not its fork server's child"
            del backend.rows[spare]
            sock.close()
        assert stranger.poll() is None
        assert not psutil.pid_exists(real) or psutil.Process(real).status() == psutil.STATUS_ZOMBIE
    finally:
        stranger.kill()
        stranger.wait()
