"""What ``echo-bench`` leaves behind: results.md, .csv, .json, .png, runs.csv and report.html.

Every figure is the median of the repeats with its spread (min-max) beside
it. The Markdown carries the exact command, so a table in the README can
always be reproduced; the JSON keeps every run's full echo-load result
(histograms included, so runs can be merged or re-read later); runs.csv has
one line per run, for whoever wants to look at the repeats themselves.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

from echoclients.bench.aggregate import METRICS, relative_spread, summarize_all

PER_CONNECTION_FROM = 100  # clients; below that, a PSS difference per connection is mostly noise
NOISY = 0.25  # repeats further apart than this (max-min over the median) are marked


def cell(row: dict, name: str, digits: int) -> str:
    """``median (min-max)``, or the one value when there was one repeat."""
    figure = row["metrics"].get(name)
    if figure is None:
        return "-"
    text = f"{figure['median']:,.{digits}f}"
    if figure["n"] > 1:
        text += f" ({figure['min']:,.{digits}f}–{figure['max']:,.{digits}f})"
    return text


def python_text(row: dict) -> str:
    """``3.13.15t GIL off``: the server's interpreter, and the GIL state the server itself reported."""
    python = row.get("server_python")
    if not python:
        return "-"
    return f"{python['version']}{'t' if python.get('free_threaded') else ''} GIL {'on' if python['gil'] else 'off'}"


COLUMNS = [
    ("run", lambda r: r["label"]),
    ("server python", python_text),
    ("msg/s", lambda r: cell(r, "msgs_per_s", 0)),
    ("MB/s", lambda r: cell(r, "mb_per_s", 2)),
    ("p50 us", lambda r: cell(r, "p50_us", 0)),
    ("p99 us", lambda r: cell(r, "p99_us", 0)),
    ("p99.9 us", lambda r: cell(r, "p999_us", 0)),
    ("served", lambda r: f"{r.get('served', 0):,}/{r.get('connections', 0):,}"),
    ("server CPU %", lambda r: cell(r, "server_cpu_percent", 0)),
    ("server PSS MiB", lambda r: cell(r, "server_pss_mb", 1)),
    ("KiB/conn", lambda r: cell(r, "kib_per_connection", 1)),
    ("client CPU %", lambda r: cell(r, "client_cpu_percent", 0)),
    ("client KiB/conn", lambda r: cell(r, "client_kib_per_connection", 1)),
    ("errors", lambda r: errors_text(r)),
    ("notes", lambda r: marks(r)),
]

# The mixed scenario's own columns, after the run's label: the measured (tiny) clients alone, and
# their p99 beside heavy clients over it.
MIXED_COLUMNS = [
    ("alone p50 us", lambda r: cell(r, "alone_p50_us", 0)),
    ("alone p99 us", lambda r: cell(r, "alone_p99_us", 0)),
    ("alone p99.9 us", lambda r: cell(r, "alone_p999_us", 0)),
    ("p99 loaded/alone", lambda r: cell(r, "p99_loaded_over_alone", 2)),
    ("heavy msg/s", lambda r: cell(r, "heavy_msgs_per_s", 0)),
]


def marks(row: dict) -> str:
    """What to keep in mind reading the row: client-bound runs, repeats far apart."""
    notes = [f"client-bound {row['client_bound']}/{row['measured']}"] if row.get("client_bound") else []
    spread = relative_spread(row)
    if spread is not None and spread > NOISY:
        notes.append(f"noisy ±{spread / 2:.0%}")
    return ", ".join(notes)


def machine() -> dict:
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "system": platform.platform(terse=True),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        # On a shared machine the neighbours move the figures; say how busy it was.
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }


def describe(scenario, spec, repeat: int) -> str:
    """The run's parameters in one sentence (the Markdown, the chart and the report all show it)."""
    mode = f"open loop at {spec.rate:,.0f} msg/s" if spec.rate else f"closed loop, {spec.pipeline} in flight"
    return (
        f"scenario {scenario.name}: {spec.clients:,} clients x {spec.size:,} B, {mode}, "
        f"{spec.run_seconds:g} s after {spec.warmup_seconds:g} s warmup, "
        f"{repeat} repeat{'s' if repeat != 1 else ''} (interleaved)"
    )


def write_outputs(
    results: list[dict], out: Path, *, scenario, spec, command: str, repeat: int = 1, chart: bool = True
) -> tuple[str, list[Path]]:
    """Write every file; return the Markdown table (what the terminal shows too) and the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize_all(results)
    table = markdown_table(rows)
    host = machine()
    meta = {
        "command": command,
        "scenario": scenario.name,
        "teaches": scenario.teaches,
        "server_args": list(scenario.server_args),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "repeat": repeat,
        "warmup_s": spec.warmup_seconds,
        "parameters": describe(scenario, spec, repeat),
        **host,
        "load": {k: v for k, v in vars(spec).items() if v not in (None, "")},
    }
    written = [out / "results.md", out / "results.csv", out / "runs.csv", out / "results.json"]
    charts = {}
    chart_note = ""
    if chart:
        from echoclients.bench.chart import plot_all

        charts, chart_note = plot_all(rows, out, meta)
        written += list(charts.values())
    (out / "results.json").write_text(json.dumps({**meta, "summary": rows, "runs": results}, indent=2) + "\n")
    write_summary_csv(rows, out / "results.csv")
    write_runs_csv(results, out / "runs.csv")
    lines = [
        f"# echo-bench: scenario `{scenario.name}`",
        "",
        f"`{command}`",
        "",
        f"{scenario.teaches}. Server flags: `{' '.join(scenario.server_args) or '(none)'}`; "
        f"{meta['parameters']}. {host['machine']}, {host['python']}, {meta['date']}, "
        f"load average {host['load_average'][0]} at the end.",
        "",
        table,
        "",
        *footnotes(rows),
        "",
    ]
    if chart_note:
        lines += [chart_note, ""]
    (out / "results.md").write_text("\n".join(lines))
    from echoclients.bench.report import write_report

    written.append(write_report(out / "report.html", rows, meta, charts, table_rows(rows)))
    return table, written


def table_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells; memory per connection only where connections outweigh a process's own noise (100 or more)."""
    many = max((r.get("clients") or 0 for r in rows), default=0) >= PER_CONNECTION_FROM
    columns = [c for c in COLUMNS if many or not c[0].endswith("KiB/conn")]
    if any(r["metrics"].get("alone_p99_us") for r in rows):
        columns = columns[:1] + MIXED_COLUMNS + columns[1:]
    return [name for name, _ in columns], [
        [read(r) if i == 0 or r["measured"] else _failed_cell(r, i, columns) for i, (_, read) in enumerate(columns)]
        for r in rows
    ]


def _failed_cell(row: dict, column: int, columns: list) -> str:
    return errors_text(row) if columns[column][0] == "errors" else ""


def markdown_table(rows: list[dict]) -> str:
    header, body = table_rows(rows)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])


def footnotes(rows: list[dict]) -> list[str]:
    """What the marks mean, and only the marks that occur."""
    notes = ["Each figure: median of the repeats, (min–max) beside it."]
    bound = [r for r in rows if r.get("client_bound")]
    if bound:
        notes.append(
            "client-bound: echo-load's process was saturated while the server was not, in "
            + ", ".join(f"{r['label']} ({r['client_bound']} of {r['measured']} runs)" for r in bound)
            + ": those figures measure the client; add echo-load --processes or run it elsewhere."
        )
    noisy = [r for r in rows if (relative_spread(r) or 0) > NOISY]
    if noisy:
        notes.append(
            f"noisy: the repeats' msg/s differ by more than {NOISY:.0%} of the median "
            f"({', '.join(r['label'] for r in noisy)}); compare medians with care or add --repeat."
        )
    return [note + "  " for note in notes]


def write_summary_csv(rows: list[dict], path: Path) -> None:
    """One line per run label: every metric as median, min and max."""
    fields = ["label", "backend", "server_python", "server_gil", "repeats", "measured", "clients", "size", "duration_s"]
    fields += [f"{name}_{stat}" for name in METRICS for stat in ("median", "min", "max")]
    fields += ["served", "connections", "client_bound_runs", "errors", "mismatches", "failed"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            line = {key: r.get(key) for key in fields[:9]}
            python = r.get("server_python") or {}
            line.update(server_python=python.get("version"), server_gil=python.get("gil"))
            for name in METRICS:
                figure = r["metrics"].get(name) or {}
                line.update({f"{name}_{stat}": figure.get(stat) for stat in ("median", "min", "max")})
            line.update(
                served=r["served"],
                connections=r["connections"],
                client_bound_runs=r["client_bound"],
                errors=errors_text(r),
                mismatches=r["mismatches"],
                failed="; ".join(r["failed"]),
            )
            writer.writerow(line)


def write_runs_csv(results: list[dict], path: Path) -> None:
    """One line per run, in the order they ran."""
    fields = ["label", "repeat", "backend", "msgs_per_s", *list(METRICS)[1:], "client_bound", "errors", "failed"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in results:
            line = {name: (None if r.get("failed") else read(r)) for name, read in METRICS.items()}
            line.update(
                label=r["label"],
                repeat=r.get("repeat"),
                backend=r.get("backend"),
                client_bound=r.get("client_bound"),
                failed=r.get("failed", ""),
                errors=", ".join(f"{k} {v}" for k, v in sorted((r.get("errors") or {}).items())),
            )
            writer.writerow(line)


def errors_text(row: dict) -> str:
    parts = [f"{kind} {count:,}" for kind, count in sorted((row.get("errors") or {}).items())]
    if row.get("mismatches"):
        parts.append(f"mismatch {row['mismatches']:,}")
    if row.get("failed"):
        parts += row["failed"]
    return ", ".join(parts) or "none"
