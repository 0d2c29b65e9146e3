"""echo-bench: several runs side by side, written out as table, CSV, JSON and chart."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from echoclients.bench.cli import Run, parse_run, parse_target

ROOT = Path(__file__).resolve().parent.parent
QUICK = ("--duration", "0.5", "--warmup", "0.1", "--clients", "4")


def echo_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "echoclients.bench.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def rows(out: Path) -> dict[str, dict]:
    with (out / "results.csv").open() as handle:
        return {row["label"]: row for row in csv.DictReader(handle)}


def test_two_backends_give_table_csv_json_and_chart(tmp_path):
    proc = echo_bench("--backend", "thread", "--backend", "asyncio", *QUICK, "--repeat", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    table = rows(tmp_path)
    assert set(table) == {"thread", "asyncio"}
    for row in table.values():
        assert float(row["msgs_per_s_median"]) > 0 and row["errors"] == "none" and row["served"] == "4"
        assert (
            float(row["server_cpu_percent_median"]) >= 0 and float(row["server_pss_mb_median"]) > 0
        )  # CPU: 10 ms ticks
    markdown = (tmp_path / "results.md").read_text()
    assert "echo-bench --backend thread --backend asyncio" in markdown
    assert "| thread" in markdown and "| asyncio" in markdown and "results.png" in markdown
    for chart in ("results.png", "latency_cdf.png", "timeline.png"):
        assert (tmp_path / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["scenario"] == "echo" and [run["label"] for run in document["runs"]] == ["thread", "asyncio"]
    assert all(run["timeline"]["msgs_per_s"] for run in document["runs"])
    assert f"wrote {tmp_path / 'results.md'}" in proc.stderr


def test_repeats_are_interleaved_and_reported_as_median_and_spread(tmp_path):
    proc = echo_bench(
        "--backend", "thread", "--backend", "asyncio", *QUICK, "--repeat", "3", "--no-chart", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "results.json").read_text())
    assert [(run["label"], run["repeat"]) for run in document["runs"]] == [
        ("thread", 1),
        ("asyncio", 1),
        ("thread", 2),
        ("asyncio", 2),
        ("thread", 3),
        ("asyncio", 3),
    ]
    for label, row in rows(tmp_path).items():
        rates = sorted(run["msgs_per_s"] for run in document["runs"] if run["label"] == label)
        assert row["repeats"] == "3"
        assert [float(row[f"msgs_per_s_{s}"]) for s in ("min", "median", "max")] == pytest.approx(rates)
    # Each run's line is printed as it finishes, after a progress line that counts the runs.
    assert "run 6/6: asyncio (repeat 3/3)" in proc.stderr and " left" in proc.stderr
    assert proc.stderr.count(" msg/s, p50 ") == 6
    median = f"{rates[1]:,.0f} ({rates[0]:,.0f}–{rates[2]:,.0f})"
    assert median in (tmp_path / "results.md").read_text()
    with (tmp_path / "runs.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 6


def test_a_running_server_is_measured_with_target(start_server, tmp_path):
    server = start_server("--backend", "gevent")
    proc = echo_bench(
        "--target", f"mine=127.0.0.1:{server.port}", *QUICK, "--repeat", "1", "--no-chart", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert float(rows(tmp_path)["mine"]["msgs_per_s_median"]) > 0
    assert not (tmp_path / "results.png").exists()


def test_each_run_gets_its_own_server_flags(tmp_path):
    proc = echo_bench(
        "--run", "cap-2=thread --max-connections 2", *QUICK, "--repeat", "1", "--no-chart", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    row = rows(tmp_path)["cap-2"]
    # Two served at once, four clients: two wait in the backlog for the whole window, since no
    # client hangs up (and frees a slot) before every worker's window has closed.
    assert row["served"] == "2"
    assert float(row["conn_rate_min_max"]) == 0


def test_a_server_that_cannot_start_is_reported_and_exit_1(tmp_path):
    proc = echo_bench(
        "--run", "broken=thread --pool-size 0", *QUICK, "--repeat", "2", "--no-chart", "--out", str(tmp_path)
    )
    assert proc.returncode == 1
    assert rows(tmp_path)["broken"]["failed"] == "server did not start; server did not start"


@pytest.mark.parametrize(
    "args", [("--target", "nonsense"), ("--backend", "carrier-pigeon"), ("--scenario", "nope"), ("--run", "=thread")]
)
def test_usage_errors_exit_2(args, tmp_path):
    proc = echo_bench(*args, "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("echo-bench: error:") and "Traceback" not in proc.stderr


def test_run_and_target_syntax():
    assert parse_run("w2=uvloop --workers 2") == Run("w2", "uvloop", ("--workers", "2"))
    assert parse_target("v6=[::1]:9000") == Run("v6", "v6", target=("::1", 9000))
    assert parse_target("thread=thread:8080").target == ("thread", 8080)


def test_label_pairs_are_drawn_as_grouped_coloured_bars():
    from echoclients.bench.chart import layout

    rows = [{"label": label} for label in ("thread-1", "thread-2", "asyncio-1", "asyncio-2")]
    positions, colours, ticks, legend, _ = layout(rows)
    assert ticks == ["thread", "asyncio"] and legend == ["-1", "-2"]
    assert positions == [-0.2, 0.2, 0.8, 1.2] and colours[0] == colours[2] != colours[1] == colours[3]
    assert layout([{"label": "thread"}, {"label": "asyncio"}])[2] == ["thread", "asyncio"]


def test_memory_per_connection_of_server_and_client_is_tabled_from_100_connections():
    from echoclients.bench.aggregate import summarize_all
    from echoclients.bench.output import table_rows

    def run(label: str, clients: int) -> dict:
        return {
            "label": label,
            "clients": clients,
            "ok": True,
            "server": {"pss_mb_connected": 30.0},
            "server_idle_pss_mb": 10.0,
            "client_bytes_per_connection": 1946,
        }

    header, cells = table_rows(summarize_all([run("asyncio", 10_240)]))
    row = dict(zip(header, cells[0]))
    assert row["KiB/conn"] == "2.0" and row["client KiB/conn"] == "1.9"  # 20 MiB / 10,240; 1,946 B
    header, _ = table_rows(summarize_all([run("asyncio", 20)]))
    assert "KiB/conn" not in header and "client KiB/conn" not in header  # PSS noise would dominate
