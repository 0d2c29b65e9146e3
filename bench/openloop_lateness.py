"""How punctual is echo-load's open loop? Send lateness and latency at a quarter of capacity.

    python bench/openloop_lateness.py --markdown bench/results/openloop_lateness.md

Starts ``echoserver --backend uvloop`` pinned to one core and, pinned to the
other, measures the closed-loop capacity with echo-load (20 connections x 64 B),
then runs ``echo-load --rate`` at 25% of it, several rounds. Each round reports
the latency percentiles and the client's own send lateness (actual minus
intended send time). Goal: send lateness p99 <= 50 us. A loaded, shared
machine delays any process that is ready to run, and that shows here as
lateness: read the machine's load average beside the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen_vs_c import echo_load_json  # noqa: E402
from echoserver.spawn import ServerProcess  # noqa: E402


def echo_load(address: tuple, core: int, *args: str) -> dict:
    return echo_load_json(
        address, core, "--clients", "20", "--size", "64", *args, tool="openloop_lateness", strict=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--load", type=float, default=0.25, help="share of the measured capacity to offer")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("openloop_lateness: needs two cores (one for the server, one for the client)")
    load_before = os.getloadavg()
    os.sched_setaffinity(0, {cores[1]})
    try:
        server = ServerProcess("--backend", "uvloop", "--log-level", "warning").start()
    finally:
        os.sched_setaffinity(0, set(cores))
    rows = []
    try:
        capacity = echo_load(
            server.address, cores[0], "--duration", str(args.duration), "--warmup", "0.5", "--threads", "1"
        )["msgs_per_s"]
        rate = round(capacity * args.load)
        for round_ in range(1, args.rounds + 1):
            result = echo_load(
                server.address,
                cores[0],
                "--rate",
                str(rate),
                "--duration",
                str(args.duration),
                "--warmup",
                "0.5",
                "--threads",
                "1",
            )
            rows.append(
                {
                    "round": round_,
                    "msgs_per_s": result["msgs_per_s"],
                    **{f"lat_{k}": result["latency_us"][k] for k in ("p50", "p90", "p99")},
                    **{f"late_{k}": result["send_lateness_us"][k] for k in ("p50", "p99", "max")},
                }
            )
            print(rows[-1], flush=True)
    finally:
        server.stop()
    text = report(rows, capacity, rate, args, load_before, os.getloadavg())
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


def report(rows: list[dict], capacity: float, rate: int, args, before: tuple, after: tuple) -> str:
    med = {key: statistics.median(row[key] for row in rows) for key in rows[0] if key != "round"}
    lines = [
        "# echo-load open loop: send lateness at a quarter of capacity",
        "",
        f"`python bench/openloop_lateness.py {' '.join(sys.argv[1:])}`",
        "",
        f"`echoserver --backend uvloop` on one core, echo-load (one thread) on the other; closed-loop capacity "
        f"{capacity:,.0f} msg/s, so `--rate {rate}` ({args.load:.0%}); 20 connections x 64 B, {args.duration:g} s "
        f"per round. Load average (1 min) before/after: {before[0]:.1f} / {after[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| round | msg/s | latency p50 us | p90 | p99 | sent late p50 us | p99 | max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['round']} | {row['msgs_per_s']:,.0f} | {row['lat_p50']} | {row['lat_p90']} | "
            f"{row['lat_p99']} | {row['late_p50']} | {row['late_p99']} | {row['late_max']} |"
        )
    lines += [
        "",
        f"**Median send lateness p99: {med['late_p99']} us** (goal <= 50 us); median latency "
        f"p50/p90/p99 {med['lat_p50']} / {med['lat_p90']} / {med['lat_p99']} us.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
