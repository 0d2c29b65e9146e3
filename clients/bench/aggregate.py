"""Repeats of one run, folded into one row: the median and the spread (min-max) of every figure.

On a shared machine one run's throughput can be off by 2x; a median of
interleaved repeats is not, and the spread beside it says how far to trust
the difference between two rows. Latency percentiles are the median of the
repeats' own percentiles (each repeat is a separate measurement), and the
repeats' histograms are also added up, for the latency CDF.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

from echoclients.bench.mixed import p99_ratio
from echoclients.load.results import decode, encode, new_histogram


def _reader(*path: str) -> Callable[[dict], Any]:
    """A function reading ``result[path[0]][path[1]]...``, None wherever a level is missing."""

    def read(result: dict) -> Any:
        value: Any = result
        for key in path:
            value = (value or {}).get(key)
        return value

    return read


# name -> how to read it off one echo-load result
METRICS: dict[str, Callable[[dict], Any]] = {
    "msgs_per_s": lambda r: r.get("msgs_per_s"),
    "mb_per_s": lambda r: r.get("mb_per_s"),
    **{f"{key}_us": _reader("latency_us", key) for key in ("p50", "p90", "p99", "p999", "max")},
    "server_cpu_percent": lambda r: (r.get("server") or {}).get("cpu_percent"),
    "server_pss_mb": lambda r: (r.get("server") or {}).get("pss_mb"),
    "kib_per_connection": lambda r: _kib_per_connection(r),
    "client_cpu_percent": lambda r: (r.get("cpu") or {}).get("client_percent"),
    "client_kib_per_connection": lambda r: _kib(r.get("client_bytes_per_connection")),
    "conn_rate_min": lambda r: (r.get("fairness") or {}).get("rate_min"),
    "conn_rate_median": lambda r: (r.get("fairness") or {}).get("rate_median"),
    "conn_rate_max": lambda r: (r.get("fairness") or {}).get("rate_max"),
    # The mixed scenario: the tiny clients alone, and how much the heavy ones slowed them.
    **{f"alone_{key}_us": _reader("unloaded", "latency_us", key) for key in ("p50", "p99", "p999")},
    "p99_loaded_over_alone": lambda r: p99_ratio(r),
    "heavy_msgs_per_s": lambda r: (r.get("heavy") or {}).get("msgs_per_s"),
}


def _kib_per_connection(r: dict):
    """What the connections added to the server's PSS over its idle size, per connection: sampled with
    every connection open and before any message where echo-load did (``pss_mb_connected``), so that
    buffers and heap the traffic grew afterwards are not charged to holding a connection."""
    server = r.get("server") or {}
    held = server.get("pss_mb_connected")
    pss, idle, clients = (
        held if held is not None else server.get("pss_mb"),
        r.get("server_idle_pss_mb"),
        r.get("clients"),
    )
    return round((pss - idle) * 1024 / clients, 1) if pss is not None and idle is not None and clients else None


def _kib(nbytes: int | None) -> float | None:
    return None if nbytes is None else round(nbytes / 1024, 2)


def spread(values: list) -> dict | None:
    """``{"median", "min", "max", "n"}`` of the values that exist, or None when none does."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"median": round(statistics.median(present), 3), "min": min(present), "max": max(present), "n": len(present)}


def summarize(label: str, runs: list[dict]) -> dict:
    """One label's repeats as one row; the raw runs stay in results.json beside it."""
    measured = [r for r in runs if not r.get("failed")]
    row = {
        "label": label,
        "backend": (measured or runs)[0].get("backend"),
        "repeats": len(runs),
        "measured": len(measured),
        "failed": [r["failed"] for r in runs if r.get("failed")],
    }
    if measured:
        first = measured[0]
        row.update(
            clients=first.get("clients"),
            size=first.get("size"),
            duration_s=first.get("duration_s"),
            server_python=first.get("server_python"),
        )
    row["metrics"] = {name: spread([read(r) for r in measured]) for name, read in METRICS.items()}
    row["client_bound"] = sum(1 for r in measured if r.get("client_bound"))
    row["errors"] = dict(sum((Counter(r.get("errors") or {}) for r in measured), Counter()))
    row["mismatches"] = sum(r.get("mismatches") or 0 for r in measured)
    served = [(r.get("fairness") or {}) for r in measured]
    row["served"] = min((f.get("served", 0) for f in served), default=0)
    row["connections"] = max((f.get("connections", 0) for f in served), default=0)
    row["ok"] = bool(measured) and len(measured) == len(runs) and all(r.get("ok") for r in measured)
    row["histogram"] = _added([r.get("histogram") for r in measured])
    row["per_run_rates"] = [None if r.get("failed") else r.get("msgs_per_s") for r in runs]
    row["timelines"] = [(r.get("timeline") or {}).get("msgs_per_s", []) for r in measured]
    row["window_offsets"] = [_window_offset(r) for r in measured]
    return row


def summarize_all(results: list[dict]) -> list[dict]:
    """Rows in the order the labels first ran."""
    labels = list(dict.fromkeys(r["label"] for r in results))
    return [summarize(label, [r for r in results if r["label"] == label]) for label in labels]


def relative_spread(row: dict, name: str = "msgs_per_s") -> float | None:
    """(max - min) / median: 0.1 means the repeats were within 10% of each other."""
    figure = row["metrics"].get(name)
    if not figure or figure["n"] < 2 or not figure["median"]:
        return None
    return (figure["max"] - figure["min"]) / figure["median"]


def _window_offset(r: dict) -> list | None:
    """Where the measured window fell on the run's timeline, in seconds from the start of the load."""
    started, window = (r.get("timeline") or {}).get("started_wall"), r.get("window_wall")
    return [round(window[0] - started, 2), round(window[1] - started, 2)] if started and window else None


def _added(encoded: list) -> str:
    total = new_histogram()
    for item in encoded:
        if item:
            total.add(decode(item))
    return encode(total)
