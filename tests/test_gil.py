"""The GIL made visible: the ready line, the registry, per-message CPU work, echo-bench's interpreters."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from echoclients.bench.pythons import Python, probe
from echoclients.load.payload import PayloadPool
from echoserver.backends import REGISTRY, BackendSpec
from echoserver.config import HEAVY_MARKER, ServerConfig
from echoserver.observability import gil, ready
from echoserver.sansio import handlers
from support import connect, recv_exactly

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("state, suffix", [(None, ""), ("off", " gil=off"), ("on", " gil=on")])
def test_the_ready_line_names_the_gil_only_where_it_could_be_off(monkeypatch, state, suffix) -> None:
    monkeypatch.setattr(ready, "gil_state", lambda: state)
    line = ready.ready_line(("127.0.0.1", 8080), "thread")
    assert line == "listening on 127.0.0.1:8080 backend=thread" + suffix
    assert ready.parse_ready_line(line) == ("127.0.0.1", 8080, "thread")  # old parsers keep working
    assert ready.parse_gil(line) == state


def test_this_interpreter_is_described_as_it_is() -> None:
    facts = gil.describe()
    assert facts["version"] == ".".join(map(str, sys.version_info[:3]))
    assert facts["gil"] == (sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True)
    assert facts["label"].startswith("{}.{}".format(*sys.version_info[:2]))


def test_a_backend_too_new_for_this_python_is_unavailable_with_the_reason() -> None:
    spec = BackendSpec("future", "x:Y", "", min_python=(99, 0))
    assert not spec.available
    assert spec.why_unavailable() == "needs Python 99.0 or newer; this is {}.{}".format(*sys.version_info[:2])


def test_on_a_free_threaded_build_a_missing_dependency_says_why_pip_would_not_help(monkeypatch) -> None:
    spec = BackendSpec(
        "greenish",
        "x:Y",
        "",
        ("no_such_package_here",),
        "greenish",
        free_threading="greenish does not support free-threaded Python",
    )
    monkeypatch.setattr(gil, "free_threaded_build", lambda: True)
    assert spec.why_unavailable() == "greenish does not support free-threaded Python"
    monkeypatch.setattr(gil, "free_threaded_build", lambda: False)
    assert spec.why_unavailable() == "needs no_such_package_here: pip install 'echoserver[greenish]'"


def test_the_interpreters_backend_says_what_it_needs() -> None:
    spec = REGISTRY["interpreters"]
    assert spec.available == (sys.version_info >= (3, 13))
    assert spec.available or "3.13" in spec.why_unavailable()


def test_with_cpu_work_on_marked_only_marked_messages_burn_cpu(monkeypatch) -> None:
    burnt = []
    monkeypatch.setattr(handlers, "burn_cpu", burnt.append)
    handler = handlers.make_handler(ServerConfig(cpu_work=7, cpu_work_on="marked"))
    assert handler.feed(b"tiny") == (b"tiny", 1) and burnt == []
    assert handler.feed(HEAVY_MARKER + b"heavy") == (HEAVY_MARKER + b"heavy", 1) and burnt == [7]
    line = handlers.make_handler(ServerConfig(handler="line", cpu_work=3, cpu_work_on="marked"))
    assert line.feed(b"a\n" + HEAVY_MARKER + b"b\nc\n" + HEAVY_MARKER + b"d\n")[1] == 4
    assert burnt == [7, 3, 3]
    handlers.make_handler(ServerConfig(cpu_work=5)).feed(b"any")
    assert burnt == [7, 3, 3, 5]  # the default: every message


def test_the_marked_payload_marks_every_message_and_only_those() -> None:
    pool = PayloadPool(64, "marked", seed=1)
    starts = pool.sent[::64]
    assert set(starts) == set(HEAVY_MARKER)
    assert HEAVY_MARKER not in PayloadPool(64, "ascii", seed=1).sent


def test_a_run_meant_without_the_gil_that_got_one_is_flagged() -> None:
    free = Python(("python3.13t",), "3.13.15", free_threaded=True, gil=False)
    forced = Python(("python3.13t", "-X", "gil=1"), "3.13.15", free_threaded=True, gil=True)
    classic = Python(("python3.11",), "3.11.7", free_threaded=False, gil=True)
    assert (free.label, forced.label, classic.label) == ("3.13t", "3.13t+gil", "3.11")
    assert free.gil_flag("off") == "" and forced.gil_flag("on") == "" and classic.gil_flag(None) == ""
    assert "gil=on" in free.gil_flag("on")
    assert free.describe("on")["gil"] is True and classic.describe(None)["gil"] is True


def echo_bench(*args: str, out: Path) -> dict[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "echoclients.bench.cli", *args, "--repeat", "1", "--no-chart", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    with (out / "results.csv").open() as handle:
        return {row["label"]: row for row in csv.DictReader(handle)}


def test_echo_bench_runs_servers_under_another_interpreter_and_labels_them(tmp_path) -> None:
    python = probe(sys.executable)
    rows = echo_bench(
        "-b", "thread", "--python", sys.executable, "-d", "0.5", "--warmup", "0.1", "-c", "2", out=tmp_path
    )
    row = rows[f"thread@{python.label}"]
    assert float(row["msgs_per_s_median"]) > 0
    assert row["server_python"] == python.version and row["server_gil"] == str(python.gil)


def test_the_mixed_scenario_measures_tiny_clients_alone_and_beside_heavy_ones(tmp_path) -> None:
    rows = echo_bench(
        "--scenario", "mixed", "-b", "thread", "-d", "0.5", "--warmup", "0.1", "-c", "4", "--rate", "200", out=tmp_path
    )
    row = rows["thread"]
    assert float(row["msgs_per_s_median"]) > 0 and row["errors"] == "none"
    assert float(row["alone_p99_us_median"]) > 0 and float(row["heavy_msgs_per_s_median"]) > 0
    assert float(row["p99_loaded_over_alone_median"]) == pytest.approx(
        float(row["p99_us_median"]) / float(row["alone_p99_us_median"]), abs=0.006
    )  # rounded to 2 places


@pytest.mark.freethreaded
def test_interpreters_serve_from_one_process_with_a_thread_each(served_backend, start_server) -> None:
    server = start_server("--backend", served_backend("interpreters"), "--interpreters", "3")
    process = psutil.Process(server.pid)
    # The main thread, and per interpreter the thread running it and its control listener.
    assert process.num_threads() == 1 + 3 * 2
    clients = [connect(server.address) for _ in range(9)]
    for i, sock in enumerate(clients):
        sock.sendall(b"%d" % i)
        assert recv_exactly(sock, len(b"%d" % i)) == b"%d" % i
    assert process.children() == []  # no fork: nine connections, one process
    assert process.num_threads() == 1 + 3 * 2 + 9
    for sock in clients:
        sock.close()
    assert server.stop() == 0
