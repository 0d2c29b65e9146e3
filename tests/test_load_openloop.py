"""echo-load --rate: the client's own send lateness is measured, reported and merged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from echoclients.load.results import decode, merge

ROOT = Path(__file__).resolve().parent.parent


def echo_load(*args: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "echoclients.load.cli", *args, "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr


@pytest.fixture(scope="module")
def server():
    from echoserver.spawn import ServerProcess

    with ServerProcess("--backend", "asyncio", "--log-level", "warning") as server:
        yield server


def run(server, *extra: str) -> tuple[int, dict, str]:
    host, port = server.address
    return echo_load(
        "--host", host, "--port", str(port), "--clients", "4", "--duration", "1", "--warmup", "0.2", *extra
    )


def test_open_loop_reports_send_lateness_for_every_message_sent(server):
    code, result, stderr = run(server, "--rate", "2000")
    assert code == 0, stderr
    late = result["send_lateness_us"]
    assert set(late) >= {"p50", "p99", "max"} and 0 <= late["p50"] <= late["p99"] <= late["max"]
    sent = decode(result["lateness_histogram"]).get_total_count()
    # One lateness per message sent in the window; replies to the last few are still on their way.
    assert abs(sent - result["messages"]) <= 0.05 * result["messages"] + 10, (sent, result["messages"])
    assert isinstance(result["client_late"], bool)


def test_closed_loop_results_keep_their_old_fields(server):
    code, result, stderr = run(server)
    assert code == 0, stderr
    assert "send_lateness_us" not in result and "lateness_histogram" not in result


def test_merge_adds_send_lateness_histograms(server):
    parts = [run(server, "--rate", "1000")[1] for _ in range(2)]
    merged = merge(parts)
    counts = [decode(part["lateness_histogram"]).get_total_count() for part in parts]
    assert decode(merged["lateness_histogram"]).get_total_count() == sum(counts)
    assert merged["send_lateness_us"]["max"] == max(part["send_lateness_us"]["max"] for part in parts)


def test_client_late_warning_when_lateness_is_most_of_the_latency(server, tmp_path):
    code, result, _ = run(server, "--rate", "1000")
    assert code == 0
    result["lateness_histogram"] = result["histogram"]  # as if the client had caused every microsecond
    path = tmp_path / "late.json"
    path.write_text(json.dumps(result))
    proc = subprocess.run(
        [sys.executable, "-m", "echoclients.load.cli", "merge", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0
    assert "sent late" in proc.stdout and "warning: client-late" in proc.stderr


def test_an_open_loop_is_judged_by_its_punctuality_not_its_busy_polling():
    from echoclients.load.sampling import judge_bottleneck

    busy = {"cpu": {"saturated": True}, "server": {"cpu_percent": 40.0}, "rate": 30000.0}
    punctual, late = {**busy, "client_late": False}, {**busy, "client_late": True}
    judge_bottleneck(punctual)
    judge_bottleneck(late)
    assert punctual["client_bound"] is False and late["client_bound"] is True
    closed = {"cpu": {"saturated": True}, "server": {"cpu_percent": 40.0}, "rate": None}
    judge_bottleneck(closed)
    assert closed["client_bound"] is True
