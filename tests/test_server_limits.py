"""The server takes the descriptors it is allowed, and says when the kernel caps its backlog."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import pytest

SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def soft_limit_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no 'Max open files' line")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_server_raises_its_descriptor_limit_to_the_hard_one(workers):
    from echoserver.spawn import ServerProcess

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip("no finite hard limit above the soft one to raise to")
    server = ServerProcess("--workers", workers, "--log-level", "warning")
    low = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # noqa: E731
    original = subprocess.Popen.__init__

    def popen(self, *args, **kwargs):
        original(self, *args, **kwargs | {"preexec_fn": low})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", popen)
        server.start()
    try:
        assert soft_limit_of(server.pid) == hard
    finally:
        server.stop()


@pytest.mark.skipif(not SOMAXCONN.exists(), reason="no net.core.somaxconn to compare with")
def test_a_backlog_above_somaxconn_is_reported():
    from echoserver.spawn import ServerProcess

    cap = int(SOMAXCONN.read_text())
    with ServerProcess("--backlog", str(cap + 1), "--log-level", "warning") as server:
        pass
    assert f"above the kernel's net.core.somaxconn ({cap})" in server.stderr


def test_thread_backend_out_of_threads_refuses_the_connection_and_keeps_serving(monkeypatch, caplog):
    import socket
    import threading

    from echoserver.server import running_server

    start = threading.Thread.start

    def no_threads_for_connections(thread):
        if thread.name.startswith("echo-conn-"):
            raise RuntimeError("can't start new thread")
        start(thread)

    def connect(address) -> socket.socket:
        # The served client's connect may meet the RST of the refused one when the kernel hands it
        # the same local port (seen under xdist): a fresh port then, never a sleep.
        for attempt in range(3):
            try:
                return socket.create_connection(address, timeout=5)
            except ConnectionResetError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    with running_server(backend="thread", port=0) as server:
        monkeypatch.setattr(threading.Thread, "start", no_threads_for_connections)
        # Reset on purpose, no thread reads it; the reset may land before connect() has returned.
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            with socket.create_connection(server.address, timeout=5) as refused:
                refused.sendall(b"x")
                refused.recv(1)
        monkeypatch.setattr(threading.Thread, "start", start)
        with connect(server.address) as served:  # the next client is served
            served.sendall(b"ping")
            assert served.recv(4) == b"ping"
        assert server.snapshot()["error_thread_start"] == 1
    assert "cannot start a thread for a new connection" in caplog.text
