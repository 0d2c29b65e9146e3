"""The ``mixed`` scenario: a few clients ask for heavy CPU work while many send tiny echoes.

David Beazley's experiment (PyCon 2015, *Concurrency from the ground up*): one
CPU-bound request in a threaded server makes every cheap request behind it
wait for the GIL, the convoy effect; an event loop blocks outright (head-of-line
blocking); processes, subinterpreters and a free-threaded interpreter each do
something else about it. What matters is what the *tiny* clients feel, so they
are measured twice on the same server: alone, then while the heavy clients run.

The server tells the two kinds apart per message, the same way under every
backend: ``--cpu-work-on marked`` burns ``--cpu-work`` only for messages that
begin with the marker byte, which is what ``echo-load --payload marked`` sends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable


def with_heavy_clients(load_tiny: Callable[[], dict], heavy_args: list[str], on_line) -> dict:
    """The tiny clients' result under heavy load, with their unloaded result and the heavy clients' beside it."""
    unloaded = load_tiny()
    if unloaded.get("failed"):
        return unloaded
    heavy = subprocess.Popen(
        [sys.executable, "-m", "echoclients.load.cli", *heavy_args, "--json", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        loaded = load_tiny()
    finally:
        out, err = heavy.communicate(timeout=600)
    try:
        heavy_result = json.loads(out)
    except ValueError:
        on_line(f"echo-bench: heavy clients failed: {err.strip()[:200]}")
        heavy_result = {"ok": False}
    loaded["unloaded"] = {key: unloaded.get(key) for key in ("msgs_per_s", "latency_us", "ok")}
    loaded["heavy"] = {key: heavy_result.get(key) for key in ("clients", "msgs_per_s", "latency_us", "ok")}
    loaded["ok"] = bool(loaded.get("ok") and unloaded.get("ok") and heavy_result.get("ok"))
    return loaded


def p99_ratio(result: dict) -> float | None:
    """The tiny clients' p99 with heavy clients running, over their p99 without."""
    loaded = (result.get("latency_us") or {}).get("p99")
    alone = ((result.get("unloaded") or {}).get("latency_us") or {}).get("p99")
    return round(loaded / alone, 2) if loaded and alone else None
