"""The PNG chart of an ``echo-bench`` run: throughput, latency percentiles and server memory.

Throughput alone flatters the models that queue work; the latency panel (log
scale, p50 / p99 / p99.9) shows what the queueing costs each message, and the
memory panel (the server's PSS, children included) what each connection costs
to keep. Needs
matplotlib (``pip install 'echoserver[plot]'``); without it the chart is
skipped with a note, never an error.
"""

from __future__ import annotations

from pathlib import Path

PERCENTILES = (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"))


def plot(results: list[dict], path: Path, title: str) -> str:
    """Write the chart to ``path``; return the Markdown that shows it (or says why it is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(no chart: matplotlib is not installed; `pip install 'echoserver[plot]'`)"
    runs = [r for r in results if not r.get("failed")]
    labels = [r["label"] for r in runs]
    memory = [(r.get("server") or {}).get("pss_mb") for r in runs]
    panels = 3 if any(value is not None for value in memory) else 2
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), constrained_layout=True)
    left, right = axes[0], axes[1]
    figure.suptitle(title)

    rates = [r["msgs_per_s"] for r in runs]
    bars = left.bar(labels, rates, color="#4C72B0")
    left.bar_label(bars, labels=[f"{rate:,.0f}" for rate in rates], fontsize=8)
    left.set_ylabel("messages / s (higher is better)")
    left.set_title("throughput")
    _served_notes(left, runs)

    width = 0.8 / len(PERCENTILES)
    for n, (key, name) in enumerate(PERCENTILES):
        values = [(r["latency_us"] or {}).get(key) or 0 for r in runs]
        positions = [i + (n - 1) * width for i in range(len(runs))]
        right.bar(positions, values, width, label=name)
    right.set_xticks(range(len(runs)), labels)
    right.set_yscale("log")
    right.set_ylabel("latency, microseconds (lower is better)")
    right.set_title("latency percentiles")
    right.legend()
    if panels == 3:
        bars = axes[2].bar(labels, [value or 0 for value in memory], color="#55A868")
        axes[2].bar_label(bars, labels=["-" if v is None else f"{v:,.0f}" for v in memory], fontsize=8)
        axes[2].set_ylabel("server PSS, MiB (lower is better)")
        axes[2].set_title("server memory at the end of the run")
    for axis in axes:
        axis.tick_params(axis="x", rotation=20)
        axis.grid(axis="y", alpha=0.3)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"![{title}]({path.name})"


def _served_notes(axis, runs: list[dict]) -> None:
    """Under a bar: how many connections were served, when not all of them were."""
    for i, r in enumerate(runs):
        fair = r.get("fairness") or {}
        if fair.get("served") != fair.get("connections"):
            axis.annotate(f"served {fair.get('served')}/{fair.get('connections')}", (i, r["msgs_per_s"]),
                          xytext=(0, 14), textcoords="offset points", ha="center", fontsize=8, color="#C44E52")
