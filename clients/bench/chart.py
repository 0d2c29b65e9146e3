"""The charts of an ``echo-bench`` run: the summary, the latency CDF and the throughput over time.

Throughput alone flatters the models that queue work; the latency panel (log
scale) shows what the queueing costs each message, the memory panel what each
connection costs to keep, and the CPU panel (scenario ``cpu``) how many cores
the server actually used. Bars are medians of the repeats with the spread
(min-max) as error bars; every figure carries the run's parameters, so a PNG
sent on its own still says what it measured. Needs matplotlib
(``pip install 'echoserver[plot]'``); without it the charts are skipped with a
note, never an error.
"""

from __future__ import annotations

import math
from pathlib import Path

from echoclients.load.results import decode

PERCENTILES = (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))
CDF_POINTS = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99)
COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
BOUND = "#C44E52"


def _thousands(value, _position) -> str:
    return f"{value:,.0f}"


try:
    from matplotlib.ticker import FuncFormatter

    THOUSANDS = FuncFormatter(_thousands)
except ImportError:  # plot_all says so; nothing is drawn
    THOUSANDS = None


def plot_all(rows: list[dict], out: Path, meta: dict) -> tuple[dict, str]:
    """Write every chart into ``out``; ``({name: path}, Markdown that shows them or says why not)``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}, "(no charts: matplotlib is not installed; `pip install 'echoserver[plot]'`)"
    measured = [r for r in rows if r["measured"]]
    if not measured:
        return {}, "(no charts: no run was measured)"
    caption = f"{meta['parameters']}\n{meta['machine']}, {meta['python']}, {meta['date']}"
    charts = {}
    for name, draw in (("results", summary), ("latency_cdf", latency_cdf), ("timeline", timeline)):
        figure = draw(plt, measured, meta)
        if figure is None:
            continue
        figure.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=8, color="#444444")
        charts[name] = out / f"{name}.png"
        figure.savefig(charts[name], dpi=100)
        plt.close(figure)
    note = "\n\n".join(f"![{name}]({path.name})" for name, path in charts.items())
    return charts, note


def layout(rows: list[dict]) -> tuple[list[float], list[str], list[str], list[str], list[str]]:
    """Bar positions, colours, tick positions' labels: grouped when the labels are ``GROUP-VARIANT`` pairs.

    ``thread-1`` / ``thread-2`` ... (one process against two) become pairs of
    bars, one colour per variant, with the group's name under each pair.
    Returns (positions, colours, tick labels, legend names, legend colours).
    """
    parts = [r["label"].rpartition("-") for r in rows]
    groups = list(dict.fromkeys(group for group, _, _ in parts))
    variants = list(dict.fromkeys(variant for _, _, variant in parts))
    if all(group for group, _, _ in parts) and len(groups) < len(rows) and 1 < len(variants) <= len(COLOURS):
        width = 0.8 / len(variants)
        positions = [groups.index(g) + (variants.index(v) - (len(variants) - 1) / 2) * width for g, _, v in parts]
        colours = [COLOURS[variants.index(v)] for _, _, v in parts]
        return positions, colours, groups, [f"-{v}" for v in variants], list(COLOURS[: len(variants)])
    return list(range(len(rows))), [COLOURS[0]] * len(rows), [r["label"] for r in rows], [], []


def _figure_of(value: dict | None) -> tuple[float, float, float]:
    if not value:
        return 0.0, 0.0, 0.0
    return value["median"], value["median"] - value["min"], value["max"] - value["median"]


def bars(axis, rows: list[dict], metric: str, digits: int = 0, label_values: bool = True) -> None:
    """Median bars with min-max error bars; client-bound runs hatched and named."""
    positions, colours, ticks, legend, legend_colours = layout(rows)
    width = 0.8 if not legend else 0.8 / len(legend)
    figures = [_figure_of(r["metrics"].get(metric)) for r in rows]
    heights = [f[0] for f in figures]
    errors = [[f[1] for f in figures], [f[2] for f in figures]]
    drawn = axis.bar(
        positions,
        heights,
        width * 0.95,
        color=colours,
        yerr=errors,
        capsize=3,
        error_kw={"elinewidth": 1, "ecolor": "#333333"},
    )
    for bar, row in zip(drawn, rows):
        if row.get("client_bound"):
            bar.set_hatch("//")
            bar.set_edgecolor(BOUND)
    if label_values:
        axis.bar_label(drawn, labels=[f"{h:,.{digits}f}" for h in heights], fontsize=7, padding=2)
    axis.set_xticks(range(len(ticks)), ticks)
    if legend:
        from matplotlib.patches import Patch

        axis.legend([Patch(color=c) for c in legend_colours], legend, fontsize=8, title="variant", title_fontsize=8)


def summary(plt, rows: list[dict], meta: dict):
    """Throughput, latency, then memory (KiB per connection for ``many`` and ``c100k``) and server CPU (``cpu``)."""
    scenario = meta["scenario"]
    memory = "kib_per_connection" if scenario in ("many", "c100k") else "server_pss_mb"
    panels = ["throughput", "latency"]
    if any(r["metrics"].get(memory) for r in rows):
        panels.append("memory")
    if scenario == "cpu" and any(r["metrics"].get("server_cpu_percent") for r in rows):
        panels.append("cpu")
    grouped = bool(layout(rows)[3])
    width = max(5.5, 0.45 * len(rows) + 2.5) if grouped or len(rows) > 6 else 5.5
    figure, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 5.2), squeeze=False)
    figure.subplots_adjust(left=0.06, right=0.98, top=0.86, bottom=0.24, wspace=0.28)
    figure.suptitle(
        f"echo-bench, scenario {scenario}: median of {meta['repeat']} interleaved repeats, "
        f"error bars min-max" + (", hatched: client-bound" if any(r.get("client_bound") for r in rows) else ""),
        fontsize=11,
    )
    for axis, panel in zip(axes[0], panels):
        if panel == "throughput":
            bars(axis, rows, "msgs_per_s")
            axis.yaxis.set_major_formatter(THOUSANDS)
            axis.set_ylabel("messages / s (higher is better)")
            axis.set_title("throughput")
        elif panel == "latency":
            latency_bars(axis, rows, grouped)
        elif panel == "memory":
            if memory == "kib_per_connection":
                bars(axis, rows, memory, 1)
                axis.set_ylabel("server PSS / connections, KiB (lower is better)")
                axis.set_title("memory per connection")
            else:
                bars(axis, rows, memory, 1)
                axis.set_ylabel("server PSS, MiB (lower is better)")
                axis.set_title("server memory at the end of the run")
        else:
            bars(axis, rows, "server_cpu_percent")
            axis.set_ylabel("server CPU, % of one core")
            axis.set_title("server CPU (above 100%: more than one core)")
            axis.axhline(100, color="#888888", linewidth=0.8, linestyle="--")
        axis.tick_params(axis="x", rotation=30, labelsize=8)
        axis.grid(axis="y", alpha=0.3)
    return figure


def latency_bars(axis, rows: list[dict], grouped: bool) -> None:
    """p50/p99/p99.9 side by side; for grouped pairs p99 alone, or the bars would not fit."""
    if grouped:
        bars(axis, rows, "p99_us", label_values=False)
        axis.set_title("p99 latency")
    else:
        width = 0.8 / len(PERCENTILES)
        for n, (metric, name) in enumerate(PERCENTILES):
            figures = [_figure_of(r["metrics"].get(metric)) for r in rows]
            axis.bar(
                [i + (n - 1) * width for i in range(len(rows))],
                [f[0] for f in figures],
                width * 0.95,
                yerr=[[f[1] for f in figures], [f[2] for f in figures]],
                capsize=2,
                label=name,
                color=COLOURS[n],
                error_kw={"elinewidth": 0.8},
            )
        axis.set_xticks(range(len(rows)), [r["label"] for r in rows])
        axis.legend(fontsize=8)
        axis.set_title("latency percentiles")
    axis.set_yscale("log")
    values = [f["min"] for r in rows for m, _ in PERCENTILES if (f := r["metrics"].get(m)) and f["min"] > 0]
    if values:  # a full decade under the smallest bar: a log axis cut just below it would exaggerate
        axis.set_ylim(bottom=10 ** (math.floor(math.log10(min(values))) - 1))
    axis.set_ylabel("latency, microseconds, log scale (lower is better)")


def latency_cdf(plt, rows: list[dict], meta: dict):
    """Latency by percentile, all repeats' histograms added: the shape of the tail, as wrk and hey print it."""
    figure, axis = plt.subplots(figsize=(9, 5.4))
    figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.2)
    drawn = False
    for n, row in enumerate(rows):
        histogram = decode(row.get("histogram") or "")
        if not histogram.get_total_count():
            continue
        values = [histogram.get_value_at_percentile(p) / 1000 for p in CDF_POINTS]
        axis.plot(
            [p / 100 for p in CDF_POINTS],
            values,
            marker=".",
            label=row["label"],
            color=COLOURS[n % len(COLOURS)],
            linestyle="-" if n < len(COLOURS) else "--",
        )
        drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axis.set_xscale("logit")
    axis.set_xticks([p / 100 for p in (10, 50, 90, 99, 99.9, 99.99)], ["10%", "50%", "90%", "99%", "99.9%", "99.99%"])
    axis.xaxis.set_minor_formatter(plt.NullFormatter())
    axis.set_yscale("log")
    axis.set_xlabel("percentile (the tail stretched out)")
    axis.set_ylabel("latency, microseconds")
    axis.set_title(f"latency distribution, scenario {meta['scenario']}: every repeat's messages together")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8, ncol=2)
    return figure


def timeline(plt, rows: list[dict], meta: dict):
    """Messages per second, second by second, for every repeat: a stall or a ramp shows here."""
    if not any(any(t) for r in rows for t in r.get("timelines", [])):
        return None
    figure, axis = plt.subplots(figsize=(9, 5.4))
    figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.2)
    for n, row in enumerate(rows):
        colour = COLOURS[n % len(COLOURS)]
        for k, series in enumerate(row.get("timelines", [])):
            axis.plot(
                range(1, len(series) + 1),
                series,
                color=colour,
                alpha=0.8,
                linewidth=1.2,
                marker=".",
                linestyle="-" if n < len(COLOURS) else "--",
                label=row["label"] if k == 0 else None,
            )
    windows = [w for r in rows for w in r.get("window_offsets", []) if w]
    if windows:  # the latest opening and earliest closing: the part every repeat measured
        start, end = max(w[0] for w in windows), min(w[1] for w in windows)
        axis.axvspan(0, start, color="#dddddd", alpha=0.5, label="connect + warmup")
        axis.axvline(end, color="#888888", linestyle=":", linewidth=1, label="window closed")
    axis.set_xlabel("seconds since the load started (one line per repeat)")
    axis.set_ylabel("messages / s")
    axis.set_ylim(bottom=0)
    axis.yaxis.set_major_formatter(THOUSANDS)
    axis.set_title(f"throughput over time, scenario {meta['scenario']}")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    return figure
