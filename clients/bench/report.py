"""report.html: one file that holds a whole ``echo-bench`` run, to send to a colleague.

Self-contained on purpose: the charts are inlined as base64 ``data:`` URIs
and the style sheet is in the page, so it opens from a mail attachment or an
air-gapped machine exactly as it does here. No script at all: nothing to
load, nothing to fail.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from echoclients.bench.output import footnotes

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.bound td:first-child { color: #C44E52; } tr.noisy td:first-child { font-style: italic; }
tr.failed td { color: #999; }
code { background: #f4f4f4; padding: 0.1em 0.3em; border-radius: 3px; word-break: break-all; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; } dt { font-weight: 600; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.notes { color: #444; }
"""


def write_report(path: Path, rows: list[dict], meta: dict, charts: dict, table: tuple) -> Path:
    e = html.escape
    header, body = table
    facts = [
        ("command", f"<code>{e(meta['command'])}</code>"),
        ("parameters", e(meta["parameters"])),
        ("what it shows", e(meta["teaches"])),
        ("server flags", f"<code>{e(' '.join(meta['server_args']) or '(none)')}</code>"),
        ("machine", e(f"{meta['machine']}; {meta['system']}")),
        ("interpreter", e(f"{meta['python']} ({meta['executable']})")),
        ("date", e(meta["date"])),
        ("load average at the end", e(", ".join(map(str, meta["load_average"])))),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>echo-bench: scenario {e(meta['scenario'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>echo-bench: scenario <code>{e(meta['scenario'])}</code></h1>",
        "<dl>" + "".join(f"<dt>{e(name)}</dt><dd>{value}</dd>" for name, value in facts) + "</dl>",
        "<h2>Results</h2>",
        _table(header, body, rows),
        '<div class="notes">' + "".join(f"<p>{_mark(note.strip())}</p>" for note in footnotes(rows)) + "</div>",
    ]
    titles = {"results": "Summary", "latency_cdf": "Latency distribution", "timeline": "Throughput over time"}
    for name, chart in charts.items():
        data = base64.b64encode(Path(chart).read_bytes()).decode("ascii")
        parts += [
            f"<h2>{e(titles.get(name, name))}</h2>",
            f'<figure><img id="chart-{e(name)}" alt="{e(titles.get(name, name))}" '
            f'src="data:image/png;base64,{data}"></figure>',
        ]
    if not charts:
        parts.append("<p>(no charts: matplotlib is not installed, or --no-chart was given)</p>")
    parts.append("<h2>Every run</h2>" + _runs_table(rows))
    parts.append('<p class="notes">results.json beside this file has every run\'s full echo-load result.</p>')
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n")
    return path


def _mark(note: str) -> str:
    return html.escape(note)


def _table(header: list[str], body: list[list[str]], rows: list[dict]) -> str:
    e = html.escape
    lines = ['<table id="results"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for cells, row in zip(body, rows):
        classes = [
            name
            for name, on in (
                ("bound", row.get("client_bound")),
                ("failed", not row["measured"]),
                ("noisy", "noisy" in cells[-1]),
            )
            if on
        ]
        lines.append(f'<tr class="{" ".join(classes)}">' + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(lines) + "</tbody></table>"


def _runs_table(rows: list[dict]) -> str:
    """msg/s of each repeat, in the order they ran: the raw material of the medians."""
    e = html.escape
    width = max((row["repeats"] for row in rows), default=0)
    lines = [
        '<table id="runs"><thead><tr><th>run</th>'
        + "".join(f"<th>#{i + 1}</th>" for i in range(width))
        + "</tr></thead><tbody>"
    ]
    for row in rows:
        series = row.get("per_run_rates") or []
        lines.append(
            f"<tr><td>{e(row['label'])}</td>"
            + "".join(f"<td>{'-' if v is None else f'{v:,.0f}'}</td>" for v in series)
            + "</tr>"
        )
    return "\n".join(lines) + "</tbody></table>"
