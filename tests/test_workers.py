"""``--workers N``: a supervisor and N worker processes sharing one port, on every backend."""

from __future__ import annotations

import gc
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from echoserver.backends.base import Backend
from echoserver.config import ServerConfig
from echoserver.net.listener import bind_listener
from echoserver.processes.cpus import available_cpus, cgroup_cpu_limit
from echoserver.workers.supervisor import Supervisor
from support import connect, echo_once, recv_exactly, recv_until_eof, server_socket, unread_bytes, wait_for

MAX_CLIENTS = 64  # connections tried before concluding that only one worker accepts


# -- observing the workers from outside ------------------------------------------


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie is dead; only its parent has yet to collect it)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def worker_pids(server) -> list[int]:
    return sorted(child.pid for child in psutil.Process(server.pid).children())


def serving_worker(server, client) -> int | None:
    """The worker whose process (or, for fork, whose connection process) holds this client's connection."""
    found = server_socket(server.port, client.getsockname()[1])
    if found is None:
        return None
    link = f"socket:[{found[1]}]"
    for worker in psutil.Process(server.pid).children():
        try:
            for process in (worker, *worker.children(recursive=True)):
                if any(_fd_link(process.pid, fd) == link for fd in os.listdir(f"/proc/{process.pid}/fd")):
                    return worker.pid
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return None


def _fd_link(pid: int, fd: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:  # closed meanwhile
        return ""


def clients_on_every_worker(server, workers: list[int]) -> dict[int, object]:
    """Connect until every worker serves at least one client; ``{worker PID: a client it serves}``."""
    found, extra = {}, []
    for _ in range(MAX_CLIENTS):
        client = connect(server.address)
        pid = wait_for(lambda: serving_worker(server, client))
        assert pid in workers, f"connection served by {pid}, not by a worker of {workers}"
        if pid in found:
            extra.append(client)
        else:
            found[pid] = client
        if len(found) == len(workers):
            break
    for client in extra:
        client.close()
    assert set(found) == set(workers), f"{MAX_CLIENTS} connections all landed on {set(found)}"
    return found


def start_workers(start_server, backend: str, *args: str):
    return start_server(
        "--backend", backend, "--workers", "2", "--grace", "5", *args, env={"PYTHONWARNINGS": "default"}
    )


# -- the behaviour -------------------------------------------------------------


def test_workers_are_separate_processes_serving_one_port(backend, start_server) -> None:
    server = start_workers(start_server, backend)
    workers = worker_pids(server)
    assert len(workers) == 2 and server.pid not in workers
    clients = clients_on_every_worker(server, workers)
    for client in clients.values():
        client.sendall(b"ping")
        assert recv_exactly(client, 4) == b"ping"
        client.close()
    assert server.stop() == 0
    assert len(re.findall(r"listening on ", server.stderr)) == 1, server.stderr
    assert "Warning" not in server.stderr, server.stderr


def test_a_killed_worker_is_replaced_and_reconnecting_clients_are_served(backend, start_server) -> None:
    server = start_workers(start_server, backend)
    victim, survivor = worker_pids(server)
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: f"worker {victim} was killed by SIGKILL" in server.stderr), server.stderr
    replaced = wait_for(lambda: len(worker_pids(server)) == 2 and victim not in worker_pids(server))
    assert replaced, server.stderr
    replacement = next(pid for pid in worker_pids(server) if pid != survivor)
    assert wait_for(lambda: f"worker {replacement} ready" in server.stderr), server.stderr
    clients = clients_on_every_worker(server, [survivor, replacement])
    for client in clients.values():
        client.sendall(b"again")
        assert recv_exactly(client, 5) == b"again"
        client.close()
    assert server.stop() == 0


def test_sigterm_drains_every_worker_and_the_supervisor_exits_zero(backend, start_server) -> None:
    server = start_workers(start_server, backend, "--io-delay", "500")
    workers = worker_pids(server)
    clients = clients_on_every_worker(server, workers)
    payload = os.urandom(2000)
    for client in clients.values():
        client.sendall(payload)
    for client in clients.values():  # every worker has read its request and is busy with it
        port = client.getsockname()[1]
        assert wait_for(lambda: unread_bytes(server.port, port) == 0)
    server.signal(signal.SIGTERM)
    for client in clients.values():
        client.shutdown(socket.SHUT_WR)
        assert recv_until_eof(client) == payload
        client.close()
    assert server.proc.wait(15) == 0, server.stderr
    assert server.stderr.count("drained and exited") == 2, server.stderr
    assert not any(map(running, workers))


def test_workers_do_not_outlive_a_killed_supervisor(backend, start_server) -> None:
    server = start_workers(start_server, backend)
    workers = worker_pids(server)
    server.kill()
    assert wait_for(lambda: not any(map(running, workers))), f"workers {workers} outlived their supervisor"


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_fewer_than_one_worker_is_a_usage_error(backend, workers) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "echoserver", "--backend", backend, "--port", "0", "--workers", workers],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "--workers" in result.stderr and "at least 1" in result.stderr


def test_workers_auto_starts_one_worker_per_available_cpu(backend, start_server) -> None:
    server = start_server("--backend", backend, "--workers", "auto")
    expected = available_cpus()
    if expected == 1:
        assert worker_pids(server) == [] and "workers=" not in server.stderr  # one process, no supervisor
    else:
        assert len(worker_pids(server)) == expected
        assert f"workers={expected}" in server.stderr
    echo_once(server.address)
    assert server.stop() == 0


class CrashingBackend(Backend):
    """Reports ready, then dies 50 ms later: a crash loop."""

    name = "crashing"

    def run(self, listeners, ready, *, handle_signals=False) -> None:
        ready()
        time.sleep(0.05)
        os._exit(3)

    def wake(self) -> None:
        pass


class StopAfterRestarts(logging.Handler):
    """Sends SIGTERM to this process once the supervisor has announced ``count`` restarts."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.supervisor = os.getpid()  # forked workers inherit this handler; they must not count
        self.delays: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"restarting it in ([\d.]+)s", record.getMessage())
        if found and os.getpid() == self.supervisor:
            self.delays.append(float(found[1]))
            if len(self.delays) == self.count:
                os.kill(os.getpid(), signal.SIGTERM)


def supervise_here(backend_class: type) -> int:
    """Run a one-worker supervisor in this test process until something sends it SIGTERM (20 s at most)."""
    config = ServerConfig(port=0, workers=1, grace=1)
    listener = bind_listener(config)
    hang_guard = threading.Timer(20, os.kill, (os.getpid(), signal.SIGTERM))
    hang_guard.start()
    try:
        return Supervisor(config, backend_class, [listener]).run()
    finally:
        hang_guard.cancel()
        listener.close()
        gc.unfreeze()  # the supervisor froze this test process's heap before each fork


def test_a_crash_loop_is_restarted_with_growing_delays() -> None:
    watcher = StopAfterRestarts(4)
    logger = logging.getLogger("echoserver.supervisor")
    logger.addHandler(watcher)
    try:
        assert supervise_here(CrashingBackend) == 0
    finally:
        logger.removeHandler(watcher)
    assert watcher.delays == [0.1, 0.2, 0.4, 0.8]


class CollectingBackend(Backend):
    """Runs a full collection in the worker and reports how much of its memory that made private."""

    name = "collecting"
    report: Path

    def run(self, listeners, ready, *, handle_signals=False) -> None:
        ready()
        before = private_dirty_kib()
        gc.collect()
        self.report.write_text(str(private_dirty_kib() - before))
        os.kill(os.getppid(), signal.SIGTERM)

    def wake(self) -> None:
        pass


def private_dirty_kib() -> int:
    with open("/proc/self/smaps_rollup") as rollup:
        return sum(int(line.split()[1]) for line in rollup if line.startswith("Private_Dirty:"))


def test_a_workers_collector_leaves_the_supervisors_objects_shared(tmp_path) -> None:
    """Held by the supervisor at fork time, 300,000 objects stay shared after the worker's full collection.

    Unfrozen, a full collection writes to every tracked object's header, and the
    kernel copies each page it touches: at 100,000 connections over 8 workers
    that was 0.3 KiB per connection (docs/c100k.md). Here it would be ~30 MiB.
    """
    hoard = [[n] for n in range(300_000)]  # ~30 MiB of tracked objects
    CollectingBackend.report = tmp_path / "copied"
    assert supervise_here(CollectingBackend) == 0
    copied_kib = int(CollectingBackend.report.read_text())  # without the freeze: ~33,000 KiB
    assert len(hoard) == 300_000
    assert copied_kib < 4096, f"the worker's collection copied {copied_kib} KiB of inherited pages"


# -- what "auto" reads -----------------------------------------------------------


def fake_system(root: Path, mountinfo: str, cgroup: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"


def test_cgroup_v2_quota_counts_on_the_own_cgroup_and_its_ancestors(tmp_path) -> None:
    root = fake_system(
        tmp_path,
        V2_MOUNT,
        "0::/app/web\n",
        {
            "sys/fs/cgroup/app/web/cpu.max": "max 100000\n",
            "sys/fs/cgroup/app/cpu.max": "150000 100000\n",
        },
    )
    assert cgroup_cpu_limit(root) == 1.5


def test_cgroup_v1_quota_is_read_and_minus_one_means_unlimited(tmp_path) -> None:
    limited = fake_system(
        tmp_path / "a",
        V1_MOUNT,
        "3:cpu,cpuacct:/docker/abc\n",
        {
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    unlimited = fake_system(
        tmp_path / "b",
        V1_MOUNT,
        "3:cpu,cpuacct:/\n",
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_limit(limited) == 0.5
    assert cgroup_cpu_limit(unlimited) is None


def test_auto_is_the_affinity_mask_capped_by_the_quota_rounded_up(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert available_cpus(str(fake_system(tmp_path / "none", "", "", {}))) == 4
    quota = fake_system(tmp_path / "quota", V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "250000 100000\n"})
    assert available_cpus(str(quota)) == 3
    tiny = fake_system(tmp_path / "tiny", V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "10000 100000\n"})
    assert available_cpus(str(tiny)) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1})
    assert available_cpus(str(quota)) == 1
