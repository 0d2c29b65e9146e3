"""echo-load: every backend, every echoed byte verified, errors counted by kind, exit codes."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support import echo_load, port_args

ROOT = Path(__file__).resolve().parent.parent
SHORT = ("--duration", "0.6", "--warmup", "0.1")
REQUIRED = {
    "backend",
    "clients",
    "processes",
    "size",
    "duration_s",
    "messages",
    "bytes",
    "msgs_per_s",
    "mb_per_s",
    "latency_us",
    "errors",
    "mismatches",
    "histogram",
    "connect_us",
    "fairness",
    "cpu",
}


@contextlib.contextmanager
def misbehaving_server(respond):
    """A tiny thread-per-connection server whose replies ``respond(conn)`` gets wrong on purpose."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=_serve, args=(conn, respond), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stop.set()
        thread.join()
        listener.close()


def _serve(conn: socket.socket, respond) -> None:
    with conn, contextlib.suppress(OSError):
        respond(conn)


def flip_first_byte(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(bytes([data[0] ^ 0x01]) + data[1:])


def reset_after_first_message(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST


# -- against every backend ------------------------------------------------------------


def test_every_byte_comes_back_from_each_backend(server, backend):
    code, result, stderr = echo_load(
        *port_args(server.address), "--clients", "8", *SHORT, "--backend", backend, "--json"
    )
    assert code == 0, stderr
    assert result["backend"] == backend
    assert result["messages"] > 0 and result["bytes"] == result["messages"] * 64
    assert result["errors"] == {} and result["mismatches"] == 0
    assert result["fairness"]["served"] == 8
    assert 0 < result["latency_us"]["p50"] <= result["latency_us"]["p99"] <= result["latency_us"]["max"]


# -- verification and errors ----------------------------------------------------------------


def test_a_corrupted_byte_is_a_mismatch_and_exit_1():
    with misbehaving_server(flip_first_byte) as address:
        code, result, _ = echo_load(*port_args(address), "--clients", "2", *SHORT, "--json")
    assert code == 1
    assert result["mismatches"] >= result["messages"] > 0  # every message was spoiled
    assert result["ok"] is False


def test_a_server_that_is_down_is_counted_not_a_traceback():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once it is closed
    code, result, stderr = echo_load("--port", str(port), "--clients", "5", *SHORT, "--json")
    assert code == 1
    assert result["errors"] == {"refused": 5}
    assert result["messages"] == 0 and result["fairness"]["served"] == 0
    assert "Traceback" not in stderr


def test_a_reset_is_counted_by_kind():
    with misbehaving_server(reset_after_first_message) as address:
        code, result, _ = echo_load(*port_args(address), "--clients", "3", *SHORT, "--json")
    assert code == 1
    assert sum(result["errors"].get(kind, 0) for kind in ("reset", "short_read", "closed_by_server")) == 3
    assert result["errors"].get("reset", 0) >= 1


def test_expect_upper_checks_against_the_servers_own_handler(start_server):
    upper = start_server("--backend", "asyncio", "--handler", "upper")
    code, result, stderr = echo_load(
        *port_args(upper.address), "--clients", "2", *SHORT, "--payload", "ascii", "--expect", "upper", "--json"
    )
    assert code == 0, stderr
    assert result["messages"] > 0 and result["mismatches"] == 0
    code, result, _ = echo_load(*port_args(upper.address), "--clients", "2", *SHORT, "--payload", "ascii", "--json")
    assert code == 1 and result["mismatches"] > 0  # expecting a plain echo from an upper-casing server


def test_ascii_payload_is_whole_lines_for_the_line_handler(start_server):
    lines = start_server("--backend", "thread", "--handler", "line")
    code, result, stderr = echo_load(
        *port_args(lines.address), "--clients", "2", *SHORT, "--size", "100", "--payload", "ascii", "--json"
    )
    assert code == 0, stderr
    assert result["messages"] > 0


# -- modes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast_server():
    from echoserver.spawn import ServerProcess

    with ServerProcess("--backend", "asyncio", "--log-level", "warning") as server:
        yield server


def test_rate_holds_within_5_percent(fast_server):
    code, result, stderr = echo_load(
        *port_args(fast_server.address),
        "--clients",
        "10",
        "--rate",
        "2000",
        "--duration",
        "3",
        "--warmup",
        "0.5",
        "--json",
    )
    assert code == 0, stderr
    assert result["rate"] == 2000
    assert abs(result["msgs_per_s"] - 2000) <= 100, result["msgs_per_s"]


def test_requests_stops_after_that_many_replies(fast_server):
    code, result, stderr = echo_load(*port_args(fast_server.address), "--clients", "4", "--requests", "2000", "--json")
    assert code == 0, stderr
    assert 2000 <= result["messages"] <= 2000 + 4


@pytest.mark.parametrize(
    "mode",
    [("--pipeline", "8"), ("--processes", "2", "--threads", "2"), ("--engine", "blocking"), ("--size", "100000")],
    ids=["pipeline", "processes", "blocking", "large-messages"],
)
def test_each_mode_verifies_and_counts(fast_server, mode):
    code, result, stderr = echo_load(*port_args(fast_server.address), "--clients", "4", *SHORT, *mode, "--json")
    assert code == 0, stderr
    assert result["messages"] > 0 and result["mismatches"] == 0 and result["errors"] == {}
    assert result["clients"] == 4 and len(result["per_connection"]) == 4
    assert result["fairness"]["served"] == 4


def test_no_client_hangs_up_before_every_window_has_closed(start_server):
    # Two slots, four clients on two threads: had one thread closed its connections as soon as
    # its own window ended, the server would have served a waiting one inside another's window.
    server = start_server("--backend", "thread", "--max-connections", "2")
    for _ in range(3):
        code, result, stderr = echo_load(
            *port_args(server.address), "--clients", "4", "--threads", "2", *SHORT, "--json"
        )
        assert code == 0, stderr
        assert result["fairness"]["served"] == 2 and result["errors"] == {}


def test_a_worker_that_crashes_does_not_hold_up_the_others(fast_server, monkeypatch):
    import time

    from echoclients.load import runner
    from echoclients.load.engine import EpollWorker
    from echoclients.load.spec import LoadSpec

    connect_all = EpollWorker.connect_all

    def crash_in_the_first(worker) -> None:  # before the first barrier: the worst place
        if worker.slot == 0:
            raise RuntimeError("a bug")
        connect_all(worker)

    monkeypatch.setattr(EpollWorker, "connect_all", crash_in_the_first)
    spec = LoadSpec(*fast_server.address, clients=4, threads=2, duration=0.5, warmup=0.1)
    started = time.monotonic()
    result = runner.run(spec)
    assert result["errors"] == {"internal:RuntimeError": 1}
    assert result["messages"] > 0 and result["mismatches"] == 0
    # The crash broke the barrier: the survivor did not wait out its timeout at the end.
    assert time.monotonic() - started < runner.BARRIER_SLACK_S


def test_json_result_has_the_documented_fields(fast_server):
    code, result, _ = echo_load(
        *port_args(fast_server.address), "--clients", "3", *SHORT, "--json", "--server-pid", str(fast_server.pid)
    )
    assert code == 0
    assert REQUIRED <= result.keys()
    assert set(result["latency_us"]) == {"p50", "p90", "p99", "p999", "max"}
    assert result["clients"] == 3 and result["processes"] == 1 and result["size"] == 64
    assert isinstance(result["msgs_per_s"], float) and result["msgs_per_s"] > 0
    assert result["server"]["cpu_percent"] is not None and result["server"]["rss_mb"] > 0
    assert result["client_bound"] in (True, False)


def test_human_output_and_no_progress_line_off_a_terminal(fast_server):
    code, _, stderr = echo_load(*port_args(fast_server.address), "--clients", "2", *SHORT)
    assert code == 0
    # Nothing but warnings (a saturated client is named on a busy machine): no progress line.
    assert all(line.startswith("echo-load: warning:") for line in stderr.splitlines()), stderr
    assert "\r" not in stderr


# -- merge -------------------------------------------------------------------------------------


def test_merge_adds_histograms_not_percentiles(fast_server, tmp_path):
    from echoclients.load.results import decode

    parts = []
    for name in ("a", "b"):
        code, result, _ = echo_load(*port_args(fast_server.address), "--clients", "2", *SHORT, "--json")
        assert code == 0
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
        parts.append(result)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "echoclients.load.cli",
            "merge",
            str(tmp_path / "a.json"),
            str(tmp_path / "b.json"),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    merged = json.loads(proc.stdout)
    assert merged["messages"] == parts[0]["messages"] + parts[1]["messages"]
    assert merged["clients"] == 4
    both = decode(parts[0]["histogram"])
    both.add(decode(parts[1]["histogram"]))
    assert decode(merged["histogram"]).get_total_count() == both.get_total_count()
    assert merged["latency_us"]["p99"] == round(both.get_value_at_percentile(99.0) / 1000, 1)
    assert merged["msgs_per_s"] == pytest.approx(parts[0]["msgs_per_s"] + parts[1]["msgs_per_s"], rel=1e-3)


# -- usage errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--clients", "0"),
        ("--bogus",),
        ("--host", "no-such-host.invalid"),
        ("--payload", "zeros"),
        ("--port", "70000"),
        ("merge",),
        ("merge", "/nonexistent.json"),
    ],
    ids=["clients", "option", "host", "payload", "port", "merge-nothing", "merge-missing"],
)
def test_usage_errors_are_one_line_and_exit_2(args):
    code, _, stderr = echo_load(*args, *SHORT)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert stderr.startswith("echo-load")


# -- the compiled closed loop (clients/load/_hotloop.c) and the Python one ------------------------------

LOOPS = ("compiled", "python")


def split_every_reply(conn: socket.socket) -> None:
    """Each reply in two writes with a pause between: the client reads it in two parts."""
    import time

    while data := conn.recv(65536):
        conn.sendall(data[:1])
        time.sleep(0.0005)
        conn.sendall(data[1:])


def spoil_every_seventh(conn: socket.socket) -> None:
    replies = 0
    while data := conn.recv(65536):
        replies += 1
        conn.sendall(data if replies % 7 else data[:-1] + bytes([data[-1] ^ 0xFF]))


def test_the_compiled_loop_was_built_where_a_compiler_is():
    import shutil

    from echoclients.load import hotloop

    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler: the install leaves the compiled loop out, on purpose")
    assert hotloop._hotloop is not None, "pip install -e . built no echoclients/load/_hotloop*.so"


@pytest.mark.parametrize("loop", LOOPS)
def test_an_exact_number_of_replies_across_the_streams_wrap(fast_server, loop):
    # 64 B messages wrap their connection's 64 KiB stream every 1,024 messages: 3 clients x ~3,300
    # messages each cross it three times; stopping at --requests is the C loop's limit.
    code, result, stderr = echo_load(
        *port_args(fast_server.address), "--clients", "3", "--threads", "1", "--requests", "10000",
        "--hot-loop", loop, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    assert result["hot_loop"] == loop
    messages = result["messages"]
    assert 10000 <= messages <= 10000 + 2 and sum(result["per_connection"]) == messages  # a batch may overrun
    assert result["bytes"] == 64 * messages and result["mismatches"] == 0 and result["errors"] == {}
    assert decode_count(result["histogram"]) == messages  # one latency per reply, none lost between C and Python


def decode_count(encoded: str) -> int:
    from echoclients.load.results import decode

    return decode(encoded).get_total_count()


@pytest.mark.parametrize("loop", LOOPS)
def test_replies_split_in_two_reads_are_verified_whole(loop):
    with misbehaving_server(split_every_reply) as address:
        code, result, stderr = echo_load(
            *port_args(address), "--clients", "2", "--requests", "300", "--hot-loop", loop, "--json"
        )
    assert code == 0, stderr
    assert 300 <= result["messages"] <= 301 and result["mismatches"] == 0 and result["errors"] == {}


@pytest.mark.parametrize("loop", LOOPS)
def test_every_spoiled_reply_is_one_mismatch_in_either_loop(loop):
    with misbehaving_server(spoil_every_seventh) as address:
        code, result, _ = echo_load(
            *port_args(address), "--clients", "1", "--requests", "700", "--hot-loop", loop, "--json"
        )
    assert code == 1
    assert result["messages"] == 700 and result["mismatches"] == 100


@pytest.mark.parametrize("loop", LOOPS)
def test_a_reset_under_either_loop_is_counted_and_the_rest_go_on(loop):
    with misbehaving_server(reset_after_first_message) as address:
        code, result, _ = echo_load(*port_args(address), "--clients", "3", *SHORT, "--hot-loop", loop, "--json")
    assert code == 1
    assert sum(result["errors"].values()) == 3


def test_without_the_compiled_module_echo_load_falls_back_and_says_so(fast_server):
    # An install that built no extension (no compiler): the import fails, the Python loop runs.
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'echoclients.load._hotloop': raise ImportError('not built')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from echoclients.load.cli import main\n"
        "sys.argv[0] = 'echo-load'\n"
        "main()\n"
    )
    args = [*port_args(fast_server.address), "--clients", "2", "--requests", "200", "--json"]
    out = subprocess.run([sys.executable, "-c", blocker, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["hot_loop"] == "python" and result["messages"] == 200 and result["mismatches"] == 0
    out = subprocess.run(
        [sys.executable, "-c", blocker, *args, "--hot-loop", "compiled"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "--hot-loop" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args, says",
    [
        (("--hot-loop", "compiled", "--rate", "100"), "--pipeline 1"),
        (("--hot-loop", "compiled", "--pipeline", "4"), "--pipeline 1"),
        (("--hot-loop", "turbo"), "turbo"),
    ],
    ids=["rate", "pipeline", "unknown"],
)
def test_hot_loop_usage_errors(args, says):
    code, _, stderr = echo_load(*args, *SHORT)
    assert code == 2 and says in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_the_python_loop_can_be_chosen_by_environment(fast_server):
    import os

    env = {**os.environ, "ECHO_LOAD_HOT_LOOP": "python"}
    args = [sys.executable, "-m", "echoclients.load.cli", *port_args(fast_server.address)]
    out = subprocess.run(
        [*args, "--clients", "2", "--requests", "100", "--json"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0 and json.loads(out.stdout)["hot_loop"] == "python"
    env["ECHO_LOAD_HOT_LOOP"] = "pyhton"  # a typo is an error, not the default
    out = subprocess.run(
        [*args, "--clients", "2", "--requests", "100"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 2 and "ECHO_LOAD_HOT_LOOP='pyhton'" in out.stderr and "Traceback" not in out.stderr


def two_clients_with_a_short_timeout(serve, loop: str, duration: float):
    """echo-load with ``--timeout 0.3`` and no warm-up against ``serve``: (exit code, result, stderr)."""
    with misbehaving_server(serve) as address:
        return echo_load(
            *port_args(address), "--clients", "2", "--timeout", "0.3", "--duration", str(duration), "--warmup", "0",
            "--hot-loop", loop, "--json",
        )  # fmt: skip


def swallow_after_ten(conn: socket.socket) -> None:
    """Echoes ten messages, then reads and never replies: the client's --timeout must end it."""
    replies = 0
    while data := conn.recv(65536):
        if replies < 10:
            conn.sendall(data)
        replies += 1


@pytest.mark.parametrize("loop", LOOPS)
def test_a_reply_overdue_past_timeout_is_a_timeout_in_either_loop(loop):
    # The compiled loop keeps each send time in its table: the sweep must see the table's, not a stale one.
    code, result, _ = two_clients_with_a_short_timeout(swallow_after_ten, loop, duration=1.5)
    assert code == 1
    assert result["errors"] == {"timeout": 2} and result["mismatches"] == 0
    # Replies before the window opened (its first tick) are not counted: at most the 20 echoed.
    assert result["messages"] == sum(result["per_connection"]) <= 20


def reply_after_50ms(conn: socket.socket) -> None:
    import time

    while data := conn.recv(65536):
        time.sleep(0.05)
        conn.sendall(data)


@pytest.mark.parametrize("loop", LOOPS)
def test_slow_but_steady_replies_are_never_timeouts_in_either_loop(loop):
    # Each reply within --timeout, the run four times longer: a sweep reading a send time the
    # compiled loop had moved on from would call a steady connection overdue.
    code, result, stderr = two_clients_with_a_short_timeout(reply_after_50ms, loop, duration=1.2)
    assert code == 0, stderr
    assert result["errors"] == {} and result["messages"] >= 20
