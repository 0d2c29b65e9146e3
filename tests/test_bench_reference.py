"""The benchmark's own parts: every reference server echoes, and the C client builds and verifies.

The overhead benchmark itself (``bench/overhead.py``) is not a test; these only
make sure that what it compares against and what it measures with are right.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import connect, recv_exactly

BENCH = Path(__file__).resolve().parent.parent / "bench"
REFERENCES = ["thread", "threadpool", "fork", "socketserver_fork", "gevent", "asyncio", "uvloop"]
NEEDS = {"gevent": "gevent", "uvloop": "uvloop"}


def load_overhead():
    spec = importlib.util.spec_from_file_location("bench_overhead", BENCH / "overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def overhead():
    return load_overhead()


@pytest.mark.parametrize("model", REFERENCES)
def test_reference_server_echoes_1_kib(overhead, model):
    if model in NEEDS:
        pytest.importorskip(NEEDS[model])
    payload = os.urandom(1024)
    with overhead.Servers() as servers:
        server = servers.start(model, "reference")
        with connect(("127.0.0.1", server.port)) as sock:
            sock.sendall(payload)
            assert recv_exactly(sock, len(payload)) == payload


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_epoll_client_builds_and_verifies_every_byte(tmp_path, start_server):
    binary = tmp_path / "epoll-client"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(BENCH / "c" / "epoll_client.c")], check=True)
    server = start_server("--backend", "asyncio", "--grace", "3")

    done = subprocess.run(
        [str(binary), server.host, str(server.port), "4", "1024", "1"], capture_output=True, text=True, timeout=30
    )

    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert set(result) == {"messages", "bytes", "seconds", "msgs_per_s", "errors", "mismatches", "cpu_s"}
    assert result["messages"] > 0 and result["bytes"] >= result["messages"] * 1024
    assert result["errors"] == 0 and result["mismatches"] == 0
    assert 0 < result["cpu_s"] <= result["seconds"] * 1.5


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_epoll_client_warmup_is_not_counted(tmp_path, start_server):
    binary = tmp_path / "epoll-client"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(BENCH / "c" / "epoll_client.c")], check=True)
    server = start_server("--backend", "asyncio", "--grace", "3")

    done = subprocess.run(
        [str(binary), "--warmup", "0.5", server.host, str(server.port), "2", "64", "0.5", "4"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    result = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert 0.5 <= result["seconds"] < 1.0  # the window alone, not warmup + window
    assert result["messages"] > 0 and result["errors"] == 0 and result["mismatches"] == 0
    assert result["bytes"] <= (result["messages"] + 2 * 4) * 64  # what was echoed in the window only


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_epoll_client_reports_corrupted_echo(tmp_path, start_server):
    binary = tmp_path / "epoll-client"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(BENCH / "c" / "epoll_client.c")], check=True)
    server = start_server("--backend", "asyncio", "--handler", "upper", "--grace", "3")

    done = subprocess.run(
        [str(binary), server.host, str(server.port), "2", "256", "0.3"], capture_output=True, text=True, timeout=30
    )

    assert done.returncode == 1
    assert json.loads(done.stdout)["mismatches"] > 0


def test_fork_memory_sees_copy_on_write():
    """The measurement behind docs/overhead.md's fork section: touching one object per page costs a page each."""
    spec = importlib.util.spec_from_file_location("bench_fork_memory", BENCH / "fork_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    packed = sorted(module.forked_rung((), "packed"))[module.CHILDREN // 2]
    spread = sorted(module.forked_rung((), "spread"))[module.CHILDREN // 2]
    copied_pages = (spread - packed) * 1024 / module.PAGE
    assert 0.8 * module.TOUCHED <= copied_pages <= 1.2 * module.TOUCHED
