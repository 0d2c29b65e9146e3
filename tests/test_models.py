"""Each backend really runs its model: threads come and go, children are reaped, gevent patches cleanly."""

from __future__ import annotations

import psutil
import pytest

from echoserver.backends import REGISTRY
from support import connect, connection_processes, echo_once, recv_exactly, wait_for, zombies


@pytest.mark.skipif(not REGISTRY["gevent"].available, reason="gevent not installed")
def test_gevent_patches_without_monkey_patch_warning(start_server) -> None:
    server = start_server("--backend", "gevent", "--io-delay", "1", env={"PYTHONWARNINGS": "default"})
    echo_once(server.address)
    assert server.stop() == 0
    assert "MonkeyPatchWarning" not in server.stderr
    assert "Warning" not in server.stderr


def test_thread_backend_runs_a_thread_per_connection_and_returns_to_baseline(start_server) -> None:
    server = start_server("--backend", "thread")
    process = psutil.Process(server.pid)
    baseline = process.num_threads()
    socks = [connect(server.address) for _ in range(20)]
    for sock in socks:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
    assert process.num_threads() == baseline + 20
    for sock in socks:
        sock.close()
    assert wait_for(lambda: process.num_threads() == baseline), (process.num_threads(), baseline)


def test_threadpool_never_runs_more_threads_than_the_pool(start_server) -> None:
    server = start_server("--backend", "threadpool", "--pool-size", "4")
    process = psutil.Process(server.pid)
    baseline = process.num_threads()
    socks = [connect(server.address) for _ in range(10)]
    for sock in socks[:4]:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
    assert process.num_threads() == baseline + 4
    socks[4].sendall(b"queued")  # a fifth client waits for a free worker...
    socks[4].settimeout(0.3)
    with pytest.raises(TimeoutError):
        socks[4].recv(6)
    socks[0].close()  # ...and is served as soon as one is free
    socks[4].settimeout(10)
    assert recv_exactly(socks[4], 6) == b"queued"
    assert process.num_threads() == baseline + 4
    for sock in socks[1:]:
        sock.close()


def test_fork_serves_each_connection_in_a_child_and_leaves_no_zombies(start_server) -> None:
    server = start_server("--backend", "fork")
    parent = psutil.Process(server.pid)
    with connect(server.address) as held:
        held.sendall(b"x")
        assert recv_exactly(held, 1) == b"x"
        assert len(connection_processes(server.pid)) == 1
        for i in range(200):
            echo_once(server.address, b"%d" % i)

    def settled():
        return not connection_processes(server.pid) and not zombies(server.pid)

    assert wait_for(settled), [(c.pid, c.status()) for c in parent.children(recursive=True)]


def test_fork_caps_its_children(start_server) -> None:
    server = start_server("--backend", "fork", "--max-children", "2")
    first, second = connect(server.address), connect(server.address)
    for sock in (first, second):
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
    third = connect(server.address)
    third.sendall(b"waits")
    third.settimeout(0.5)
    with pytest.raises(TimeoutError):
        third.recv(5)
    assert len(connection_processes(server.pid)) == 2
    first.close()
    third.settimeout(10)
    assert recv_exactly(third, 5) == b"waits"
    second.close()
    third.close()
