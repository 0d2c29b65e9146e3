"""echo-load as a person uses it: sizes as the server writes them, Unix sockets, --reconnect, merge checks."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from pathlib import Path

from echoclients.load.progress import ProgressLine
from echoclients.load.spec import LoadSpec

ROOT = Path(__file__).resolve().parent.parent
SHORT = ("--duration", "0.8", "--warmup", "0.1", "--clients", "4", "--json", "--quiet")


def echo_load(*args: str) -> tuple[int, dict | None, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "echoclients.load.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    return proc.returncode, json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else None, proc.stderr


def test_size_takes_the_servers_syntax(start_server):
    server = start_server("--backend", "asyncio")
    code, result, err = echo_load("--port", str(server.port), "--size", "1KiB", *SHORT)
    assert code == 0, err
    assert result["size"] == 1024 and result["bytes"] == result["messages"] * 1024 and result["mismatches"] == 0


def test_a_unix_socket_target(start_server, tmp_path):
    path = tmp_path / "echo.sock"
    start_server("--backend", "uvloop" if _has("uvloop") else "asyncio", "--bind", f"unix:{path}")
    code, result, err = echo_load("--host", f"unix:{path}", *SHORT)
    assert code == 0, err
    assert result["target"] == f"unix:{path}" and result["messages"] > 0 and result["fairness"]["served"] == 4


def test_reconnect_measures_through_resets(start_server):
    server = start_server("--backend", "asyncio", "--reset-probability", "0.05")
    code, result, err = echo_load("--port", str(server.port), "--reconnect", *SHORT)
    assert code == 1, result  # faults are still faults
    assert result["errors"].get("reset", 0) >= 1 and result["reconnects"] >= 1, result["errors"]
    assert result["duration_s"] >= 0.7, result[
        "duration_s"
    ]  # the whole window, not the 0.03 s until the last connection died
    assert result["mismatches"] == 0 and result["messages"] > result["reconnects"]


def test_without_reconnect_a_reset_connection_stays_lost(start_server):
    server = start_server("--backend", "asyncio", "--reset-probability", "0.05")
    code, result, _ = echo_load("--port", str(server.port), *SHORT)
    assert code == 1 and result["reconnects"] == 0 and result["errors"]["reset"] <= 4


def test_the_result_has_a_per_second_timeline(start_server):
    server = start_server("--backend", "thread")
    code, result, err = echo_load(
        "--port", str(server.port), "--duration", "2", "--warmup", "0.2", "--clients", "2", "--json", "--quiet"
    )
    assert code == 0, err
    rates = result["timeline"]["msgs_per_s"]
    assert len(rates) >= 2 and sum(rates) > 0 and result["window_wall"][1] > result["window_wall"][0]


def test_merge_warns_when_windows_did_not_overlap(start_server, tmp_path):
    server = start_server("--backend", "asyncio")
    code, result, err = echo_load("--port", str(server.port), *SHORT)
    assert code == 0, err
    later = copy.deepcopy(result)
    later["window_wall"] = [w + 60 for w in result["window_wall"]]
    (tmp_path / "a.json").write_text(json.dumps(result))
    (tmp_path / "b.json").write_text(json.dumps(later))
    (tmp_path / "c.json").write_text(json.dumps(result))
    code, merged, err = echo_load("merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json")
    assert code == 0 and merged["overlap"] < 0 and "did not overlap" in err
    code, merged, err = echo_load("merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--json")
    assert code == 0 and merged["overlap"] == 1.0 and "warning" not in err


def test_large_numbers_have_separators():
    code, _, err = echo_load("--clients", "2000000")
    assert code == 2 and "1,000,000" in err and "2,000,000" in err and "e+" not in err


def test_the_progress_line_leaves_nothing_behind_when_it_shrinks():
    out = io.StringIO()
    line = ProgressLine(LoadSpec(), stream=out)
    line.draw("x" * 40)
    line.draw("y" * 10)
    line.clear()
    writes = out.getvalue().split("\r")
    assert writes[2] == "y" * 10 + " " * 30 and writes[3] == " " * 10


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_plain_text_to_a_tls_listener_gets_a_hint(start_server, tls_files):
    server = start_server("--backend", "asyncio", "--tls-cert", tls_files["cert"], "--tls-key", tls_files["key"])
    code, result, err = echo_load("--port", str(server.port), *SHORT)
    assert code == 1 and result["messages"] == 0 and "add --tls" in err
    code, result, err = echo_load("--port", str(server.port), "--tls", "--tls-ca", tls_files["ca"], *SHORT)
    assert code == 0 and result["messages"] > 0 and "add --tls" not in err
