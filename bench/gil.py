"""The GIL switched off, measured beside the other models: cpu, echo and mixed scenarios, and memory.

Every server runs under three interpreters: a free-threaded build with the GIL
off, the *same binary* with ``-X gil=1`` (the cleanest A/B there is), and the
classic default build (3.11 here). ``echo-bench --python`` starts them and
labels the runs ``thread@3.13t``, ``thread@3.13t+gil``, ``thread@3.11``; a run
meant to be GIL-free whose server reported ``gil=on`` is flagged by echo-bench
and left out of the medians here.

The machine is shared and small, so figures move: every scenario is run
``--rounds`` times, rounds alternate the interpreters run by run (echo-bench
runs each backend's interpreters back to back), and the tables give medians
over rounds; every round's echo-bench output is kept under OUT/rounds/.

    python bench/gil.py --ft .venv-ft/bin/python --classic .venv/bin/python --rounds 3 --out bench/results/gil

``--ft`` and ``--classic`` must be interpreters with echoserver installed (venvs).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gil_memory import memory_table  # noqa: E402 - a sibling script, not a package

SCENARIOS = ("cpu", "echo", "mixed")


ROOT = Path(__file__).resolve().parent.parent


def compile_package(python: str) -> None:
    """Write .pyc files for that interpreter first. On 3.13t a module compiled from source at import
    (no .pyc: an editable install, PYTHONDONTWRITEBYTECODE=1) keeps mortal constants, and threads
    running the same loop then contend on their reference counts: docs/free-threading.md."""
    subprocess.run(
        [*shlex.split(python), "-m", "compileall", "-q", str(ROOT / "echoserver"), str(ROOT / "clients")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def available(python: str) -> list[str]:
    """The backends that interpreter can run, as its own --list-backends says."""
    out = subprocess.run(
        [*shlex.split(python), "-m", "echoserver", "--list-backends"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:2] == ["available"]]


def plan(scenario: str, ft: str, classic: str) -> list[tuple[list[str], list[str]]]:
    """(echo-bench arguments, interpreters) per echo-bench call of one round."""
    gil = f"{ft} -X gil=1"
    on_ft = available(ft)
    on_classic = [name for name in available(classic) if name != "interpreters"]
    workers = ["--run", "thread-workers2=thread --workers 2"]
    if scenario == "cpu":  # one server process: threads, a pool, subinterpreters; processes for reference
        return [
            (_b(["thread", "threadpool", "interpreters"], on_ft), [ft, gil]),
            (_b(["thread", "fork"], on_classic) + workers, [classic]),
        ]
    if scenario == "echo":  # the per-message price: every backend, everywhere it runs
        return [(_b(on_ft, on_ft), [ft, gil]), (_b(on_classic, on_classic), [classic])]
    return [
        (_b(["thread", "threadpool", "asyncio", "fork", "interpreters"], on_ft), [ft, gil]),
        (_b(["thread", "asyncio", "gevent", "fork"], on_classic) + workers, [classic]),
    ]


def _b(names: list[str], present: list[str]) -> list[str]:
    return [arg for name in names if name in present for arg in ("-b", name)]


def run_round(scenario: str, index: int, calls, args, out: Path) -> list[dict]:
    runs = []
    for call, (bench_args, pythons) in enumerate(calls):
        folder = out / "rounds" / f"{scenario}-{index}-{call}"
        command = [
            *args.prefix,
            "echo-bench",
            "--scenario",
            scenario,
            *bench_args,
            *(a for p in pythons for a in ("--python", p)),
            "-d",
            str(args.duration),
            "--warmup",
            str(args.warmup),
            "--no-chart",
            "--out",
            str(folder),
        ]
        print("$", shlex.join(command), file=sys.stderr, flush=True)
        subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
        runs += json.loads((folder / "results.json").read_text())["runs"]
    return runs


def medians(rounds: list[list[dict]]) -> dict[str, dict]:
    """Per label: the median of each figure over the rounds where the run counted, and how many did not."""
    by_label: dict[str, list[dict]] = {}
    for runs in rounds:
        for run in runs:
            by_label.setdefault(run["label"], []).append(run)
    table = {}
    for label, runs in by_label.items():
        good = [r for r in runs if not r.get("failed") and r.get("ok")]
        pick = lambda get: _median([get(r) for r in good])  # noqa: E731
        table[label] = {
            "rounds": len(good),
            "left_out": [r.get("failed") or "errors" for r in runs if r not in good],
            "msgs_per_s": pick(lambda r: r["msgs_per_s"]),
            **{k: pick(lambda r, k=k: r["latency_us"][k]) for k in ("p50", "p99", "p999")},
            "alone_p99": pick(lambda r: (r.get("unloaded") or {}).get("latency_us", {}).get("p99")),
            "p99_ratio": pick(
                lambda r: _ratio(r["latency_us"]["p99"], ((r.get("unloaded") or {}).get("latency_us") or {}).get("p99"))
            ),
            "cpu_percent": pick(lambda r: (r.get("server") or {}).get("cpu_percent")),
            # What one message cost the server in CPU time, whether or not the client kept it busy.
            "cpu_us_per_msg": pick(
                lambda r: _ratio((r.get("server") or {}).get("cpu_percent", 0) * 1e4, r["msgs_per_s"])
            ),
            "python": (good or runs)[0].get("server_python"),
        }
    return table


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ratio(a, b) -> float | None:
    return a / b if a and b else None


def _f(value, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(scenario: str, table: dict[str, dict]) -> list[str]:
    lines = [f"## {scenario}", ""]
    if scenario == "mixed":
        lines += [
            "| run | tiny p50 us | tiny p99 us | tiny p99.9 us | tiny p99 alone us | p99 loaded/alone | rounds |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {label} | {_f(t['p50'])} | {_f(t['p99'])} | {_f(t['p999'])} | {_f(t['alone_p99'])} | "
            f"{_f(t['p99_ratio'], 2)} | {t['rounds']}{_left_out(t)} |"
            for label, t in table.items()
        ]
    else:
        lines += [
            "| run | msg/s | p50 us | p99 us | server CPU % | server CPU us/msg | rounds |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {label} | {_f(t['msgs_per_s'])} | {_f(t['p50'])} | {_f(t['p99'])} | {_f(t['cpu_percent'])} | "
            f"{_f(t.get('cpu_us_per_msg'), 1)} | {t['rounds']}{_left_out(t)} |"
            for label, t in table.items()
        ]
    return lines + [""] + ratios(scenario, table) + [""]


def _left_out(t: dict) -> str:
    return f" ({len(t['left_out'])} left out: {'; '.join(t['left_out'])})" if t["left_out"] else ""


def ratios(scenario: str, table: dict[str, dict]) -> list[str]:
    """The comparisons the numbers exist for, as ratios of medians."""
    rate = lambda label: (table.get(label) or {}).get("msgs_per_s")  # noqa: E731
    ft, gil, classic = _labels(table)
    lines = []

    def ratio(name: str, a: str, b: str, goal: str = "") -> None:
        value = _ratio(rate(a), rate(b))
        lines.append(f"- {name}: `{a}` / `{b}` = **{_f(value, 2)}x**{goal}")

    backends = sorted({label.split("@")[0] for label in table})
    if scenario == "cpu":
        ratio("free-threading, thread", f"thread@{ft}", f"thread@{gil}", " (goal >= 1.7x, 2 cores: at most 2.0x)")
        ratio("free-threading, threadpool", f"threadpool@{ft}", f"threadpool@{gil}")
        ratio("subinterpreters vs one GIL", f"interpreters@{gil}", f"thread@{gil}")
        ratio("subinterpreters, GIL off vs on", f"interpreters@{ft}", f"interpreters@{gil}")
        ratio("fork vs thread (3.11)", f"fork@{classic}", f"thread@{classic}")
        ratio("--workers 2 vs thread (3.11)", f"thread-workers2@{classic}", f"thread@{classic}")
    elif scenario == "echo":  # the price of a message: server CPU time per message, not throughput
        cost = lambda label: (table.get(label) or {}).get("cpu_us_per_msg")  # noqa: E731
        for backend in backends:
            for other in (gil, classic):
                a, b = f"{backend}@{ft}", f"{backend}@{other}"
                if a in table and b in table:
                    lines.append(f"- {backend}: CPU per message `{a}` / `{b}` = **{_f(_ratio(cost(a), cost(b)), 2)}x**")
    else:
        for label, t in table.items():
            goal = " (goal <= 2x)" if label == f"thread@{ft}" else ""
            lines.append(
                f"- {label}: tiny clients' p99 with a heavy client / alone = **{_f(t['p99_ratio'], 2)}x**{goal}"
            )
    return lines


def _labels(table: dict[str, dict]) -> tuple[str, str, str]:
    suffixes = {label.split("@")[1] for label in table if "@" in label}
    ft = next((s for s in suffixes if s.endswith("t")), "?t")
    classic = next((s for s in suffixes if not s.endswith(("t", "+gil"))), "?")
    return ft, f"{ft}+gil", classic


def chart(tables: dict[str, dict], path: Path) -> str:
    """One picture: CPU-bound throughput (left) and the tiny clients' p99 beside a heavy one (right)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(no chart: matplotlib is not installed)"
    panels = [name for name in ("cpu", "mixed") if name in tables]
    if not panels:
        return ""
    figure, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.8), constrained_layout=True, squeeze=False)
    for axis, name in zip(axes[0], panels):
        table = tables[name]
        labels = list(table)
        colours = [
            "#4C72B0" if label.endswith("t") else "#DD8452" if label.endswith("+gil") else "#55A868" for label in labels
        ]
        if name == "cpu":
            values = [table[label]["msgs_per_s"] or 0 for label in labels]
            axis.set_title("cpu: 8 clients, 5,000 iterations per message")
            axis.set_ylabel("messages / s (higher is better)")
        else:
            values = [table[label]["p99_ratio"] or 0 for label in labels]
            axis.set_title("mixed: tiny clients' p99 beside one heavy client, over alone")
            axis.set_ylabel("p99 loaded / alone (lower is better)")
            axis.set_yscale("log")
            axis.axhline(2.0, color="grey", linestyle="--", linewidth=1)
        bars = axis.bar(labels, values, color=colours)
        axis.bar_label(bars, labels=[f"{v:,.0f}" if name == "cpu" else f"{v:,.1f}x" for v in values], fontsize=7)
        axis.tick_params(axis="x", rotation=60, labelsize=8)
    figure.suptitle("blue: free-threaded, GIL off; orange: same binary, -X gil=1; green: default build")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"![cpu and mixed]({path.name})"


def rounds_on_disk(out: Path, scenario: str) -> list[list[dict]]:
    """The runs of every round an earlier invocation left under OUT/rounds/, grouped by round."""
    grouped: dict[str, list[dict]] = {}
    for path in sorted((out / "rounds").glob(f"{scenario}-*-*/results.json")):
        grouped.setdefault(path.parent.name.split("-")[1], []).extend(json.loads(path.read_text())["runs"])
    return list(grouped.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ft", required=True, help="a free-threaded interpreter with echoserver installed")
    parser.add_argument("--classic", default=sys.executable, help="a default-build interpreter [this one]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--only", default=",".join(SCENARIOS + ("memory",)))
    parser.add_argument("--out", type=Path, default=Path("bench/results/gil"))
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run echo-bench (servers and clients) under chrt -f 10: on a machine whose cores "
        "other jobs keep busy, the only way the threads get two cores; keep such runs short",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: recompute the tables from the rounds already under OUT/rounds/",
    )
    parser.add_argument(
        "--chart-from",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="only draw OUT/gil.png from the cpu.json and mixed.json earlier runs left in these folders",
    )
    args = parser.parse_args()
    args.prefix = ["chrt", "-f", "10"] if args.realtime else []
    if args.chart_from:
        tables = {
            path.stem: json.loads(path.read_text())
            for folder in args.chart_from
            for path in folder.glob("*.json")
            if path.stem in ("cpu", "mixed")
        }
        print(chart(tables, args.out / "gil.png"))
        return
    chosen = args.only.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# The GIL switched off: free-threaded CPython and subinterpreters beside the other models",
        "",
        f"`python {shlex.join(sys.argv)}`",
        "",
        "Medians over rounds on a shared 2-core machine (other jobs ran at the same time: the absolute figures "
        "move, the ratios of back-to-back runs move less). Each round's raw echo-bench output is under rounds/.",
        "",
    ]
    for python in (args.ft, args.classic) if not args.report_only else ():
        compile_package(python)
    tables = {}
    for scenario in (s for s in SCENARIOS if s in chosen):
        if args.report_only:
            rounds = rounds_on_disk(args.out, scenario)
        else:
            calls = plan(scenario, args.ft, args.classic)
            rounds = [run_round(scenario, i, calls, args, args.out) for i in range(args.rounds)]
        tables[scenario] = table = medians(rounds)
        section = report(scenario, table)
        print("\n".join(section), flush=True)
        lines += section
        (args.out / f"{scenario}.json").write_text(json.dumps(table, indent=2) + "\n")
    lines += [chart(tables, args.out / "gil.png"), ""]
    if "memory" in chosen:
        memory = args.out / "memory.md"
        section = memory.read_text().splitlines() if args.report_only else memory_table(args.ft, args.classic)
        memory.write_text("\n".join(section) + "\n")
        print("\n".join(section), flush=True)
        lines += section
    (args.out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
