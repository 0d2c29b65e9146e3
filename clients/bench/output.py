"""What ``echo-bench`` leaves behind: results.md, results.csv, results.json and results.png.

The Markdown carries the exact command, so a table in the README can always be
reproduced; the JSON keeps every run's full echo-load result (histograms
included, so runs can be merged or re-read later).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path

from echoclients.bench.mixed import p99_ratio

COLUMNS = [
    ("run", lambda r: r["label"]),
    ("server python", lambda r: _python(r)),
    ("msg/s", lambda r: _n(r.get("msgs_per_s"), 0)),
    ("MB/s", lambda r: _n(r.get("mb_per_s"), 2)),
    ("p50 us", lambda r: _n(_lat(r, "p50"), 1)),
    ("p99 us", lambda r: _n(_lat(r, "p99"), 1)),
    ("p99.9 us", lambda r: _n(_lat(r, "p999"), 1)),
    ("max us", lambda r: _n(_lat(r, "max"), 1)),
    ("served", lambda r: _served(r)),
    ("conn msg/s min/med/max", lambda r: _spread(r)),
    ("server CPU %", lambda r: _n(_server(r, "cpu_percent"), 0)),
    ("server PSS MiB", lambda r: _n(_server(r, "pss_mb"), 1)),
    ("client CPU %", lambda r: _n((r.get("cpu") or {}).get("client_percent"), 0)),
    ("errors", lambda r: _errors(r)),
]


def write_outputs(results: list[dict], out: Path, *, scenario, spec, command: str, chart: bool = True) -> str:
    """Write the four files; return the Markdown table (what the terminal shows too)."""
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    chart_note = ""
    if chart:
        from echoclients.bench.chart import plot

        chart_note = plot(results, out / "results.png", title=f"echo-bench, scenario {scenario.name}")
    meta = {
        "command": command, "scenario": scenario.name, "teaches": scenario.teaches,
        "server_args": list(scenario.server_args), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        # On a shared machine the neighbours move the figures; say how busy it was.
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "load": {k: v for k, v in vars(spec).items() if v not in (None, "")},
    }
    (out / "results.json").write_text(json.dumps({**meta, "runs": results}, indent=2) + "\n")
    write_csv(results, out / "results.csv")
    lines = [f"# echo-bench: scenario `{scenario.name}`", "", f"`{command}`", "",
             f"{scenario.teaches}. Server flags: `{' '.join(scenario.server_args) or '(none)'}`; "
             f"{spec.clients} clients x {spec.size} B, "
             + (f"open loop at {spec.rate:,.0f} msg/s" if spec.rate else f"closed loop, {spec.pipeline} in flight")
             + f", {spec.run_seconds:g} s after {spec.warmup_seconds:g} s warmup. {meta['machine']}, {meta['date']}, "
             f"load average {meta['load_average'][0]} at the end.",
             "", table, ""]
    if chart_note:
        lines += [chart_note, ""]
    (out / "results.md").write_text("\n".join(lines))
    return table


# The mixed scenario: the measured (tiny) clients alone, beside their latency under heavy load.
MIXED_COLUMNS = [
    ("alone p50 us", lambda r: _n(_lat(r.get("unloaded") or {}, "p50"), 1)),
    ("alone p99 us", lambda r: _n(_lat(r.get("unloaded") or {}, "p99"), 1)),
    ("alone p99.9 us", lambda r: _n(_lat(r.get("unloaded") or {}, "p999"), 1)),
    ("p99 loaded/alone", lambda r: _n(p99_ratio(r), 2)),
    ("heavy msg/s", lambda r: _n((r.get("heavy") or {}).get("msgs_per_s"), 0)),
]


def markdown_table(results: list[dict]) -> str:
    columns = COLUMNS[:1] + (MIXED_COLUMNS if any("unloaded" in r for r in results) else []) + COLUMNS[1:]
    header = "| " + " | ".join(name for name, _ in columns) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    rows = ["| " + " | ".join(cell(r) if not r.get("failed") or i == 0 else ("" if i < len(columns) - 1
                                                                              else r["failed"])
                              for i, (_, cell) in enumerate(columns)) + " |" for r in results]
    return "\n".join([header, rule, *rows])


def write_csv(results: list[dict], path: Path) -> None:
    fields = ["label", "backend", "server_python", "server_gil", "clients", "size", "duration_s", "messages", "msgs_per_s", "mb_per_s",
              "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "connections_served", "conn_rate_min",
              "conn_rate_median", "conn_rate_max", "server_cpu_percent", "server_rss_mb", "server_pss_mb",
              "client_cpu_percent", "client_bound", "errors", "mismatches", "failed",
              "alone_p50_us", "alone_p99_us", "alone_p999_us", "p99_loaded_over_alone", "heavy_msgs_per_s"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in results:
            latency, fair, server = r.get("latency_us") or {}, r.get("fairness") or {}, r.get("server") or {}
            writer.writerow({
                "label": r["label"], "backend": r.get("backend"),
                "server_python": (r.get("server_python") or {}).get("version"),
                "server_gil": (r.get("server_python") or {}).get("gil"), "clients": r.get("clients"), "size": r.get("size"),
                "duration_s": r.get("duration_s"), "messages": r.get("messages"), "msgs_per_s": r.get("msgs_per_s"),
                "mb_per_s": r.get("mb_per_s"), **{f"{k}_us": latency.get(k) for k in ("p50", "p90", "p99", "p999",
                                                                                      "max")},
                "connections_served": fair.get("served"), "conn_rate_min": fair.get("rate_min"),
                "conn_rate_median": fair.get("rate_median"), "conn_rate_max": fair.get("rate_max"),
                "server_cpu_percent": server.get("cpu_percent"), "server_rss_mb": server.get("rss_mb"),
                "server_pss_mb": server.get("pss_mb"), "client_cpu_percent": (r.get("cpu") or {}).get("client_percent"),
                "client_bound": r.get("client_bound"), "errors": _errors(r), "mismatches": r.get("mismatches"),
                "failed": r.get("failed", ""),
                **{f"alone_{k}_us": _lat(r.get("unloaded") or {}, k) for k in ("p50", "p99", "p999")},
                "p99_loaded_over_alone": p99_ratio(r), "heavy_msgs_per_s": (r.get("heavy") or {}).get("msgs_per_s"),
            })


def _n(value, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _lat(r: dict, key: str):
    return (r.get("latency_us") or {}).get(key)


def _server(r: dict, key: str):
    return (r.get("server") or {}).get(key)


def _python(r: dict) -> str:
    """``3.13.15t GIL off``: the version, and the GIL state the server itself reported."""
    python = r.get("server_python")
    if not python:
        return "-"
    return f"{python['version']}{'t' if python['free_threaded'] else ''} GIL {'on' if python['gil'] else 'off'}"


def _served(r: dict) -> str:
    fair = r.get("fairness") or {}
    return f"{fair.get('served', 0)}/{fair.get('connections', 0)}"


def _spread(r: dict) -> str:
    fair = r.get("fairness") or {}
    if fair.get("rate_median") is None:
        return "-"
    return f"{fair['rate_min']:,.0f} / {fair['rate_median']:,.0f} / {fair['rate_max']:,.0f}"


def _errors(r: dict) -> str:
    if r.get("failed"):
        return r["failed"]
    parts = [f"{kind} {count}" for kind, count in sorted((r.get("errors") or {}).items())]
    if r.get("mismatches"):
        parts.append(f"mismatch {r['mismatches']}")
    return ", ".join(parts) or "none"
