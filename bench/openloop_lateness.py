"""How punctual is echo-load's open loop? Send lateness and latency at a quarter of capacity.

    python bench/openloop_lateness.py --markdown bench/results/openloop_lateness.md

Starts ``echoserver --backend uvloop`` pinned to one core and, pinned to the
other, measures the closed-loop capacity with echo-load (20 connections x 64 B),
then runs ``echo-load --rate`` at 25% of it, several rounds. Each round reports
the latency percentiles and the client's own send lateness (actual minus
intended send time). Goal: send lateness p99 <= 50 us. A loaded, shared
machine delays any process that is ready to run, and that shows here as
lateness: read the machine's load average beside the figures.

With ``--tcpkali PATH`` each round also runs tcpkali at the same offered rate
(20 connections, the same per-connection rate, 64-byte messages carrying its
latency marker), pinned to the same core, and reports its percentiles beside
echo-load's. Goal: echo-load's p99 within 1.5x of tcpkali's (whose figures
come in steps of 0.1 ms). Debian carries no tcpkali; docs/load.md says how to
build one.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
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
    parser.add_argument("--tcpkali", type=Path, help="a tcpkali binary, to measure at the same rate alongside")
    args = parser.parse_args()
    if args.tcpkali and not os.access(args.tcpkali, os.X_OK):
        sys.exit(f"openloop_lateness: --tcpkali {args.tcpkali}: not an executable file")
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
            if args.tcpkali:
                rows[-1].update(tcpkali(args.tcpkali, server.address, cores[0], rate, args.duration))
            print(rows[-1], flush=True)
    finally:
        server.stop()
    text = report(rows, capacity, rate, args, load_before, os.getloadavg())
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


MARKER = "EchoLoadMark"


def tcpkali(binary: Path, address: tuple, core: int, rate: int, seconds: float) -> dict:
    """tcpkali at ``rate`` messages/s in all over 20 connections: its p50/p90/p99 in us, and its rate."""
    message = "x" * (64 - len(MARKER)) + MARKER
    out = subprocess.run(
        [
            str(binary), "-c", "20", "-r", f"{rate / 20:.3f}", "-m", message, "--latency-marker", MARKER,
            "--latency-percentiles", "50,90,99", "-T", f"{seconds:g}s", f"{address[0]}:{address[1]}",
        ],
        capture_output=True, text=True, timeout=seconds + 60, preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )  # fmt: skip
    text = out.stdout + out.stderr
    found = re.search(r"Message latency at percentiles: ([\d.]+)/([\d.]+)/([\d.]+) ms", text)
    sent = re.search(r"Total data received:.*\((\d+) bytes\)", text)
    duration = re.search(r"Test duration: ([\d.]+) s", text)
    if out.returncode != 0 or not found:
        sys.exit(f"openloop_lateness: tcpkali failed ({out.returncode}): {text[-500:]}")
    rate_seen = int(sent.group(1)) / 64 / float(duration.group(1)) if sent and duration else float("nan")
    return {
        "kali_msgs_per_s": rate_seen,
        **{f"kali_{k}": float(v) * 1000 for k, v in zip(("p50", "p90", "p99"), found.groups())},
    }


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
    if "kali_p99" in rows[0]:
        lines += [
            "",
            "tcpkali at the same offered rate, on the same core, alternating with echo-load round by round "
            f"(`{' '.join(['tcpkali', '-c', '20', '-r', f'{rate / 20:.3f}', '-m', '<64 B ending in a marker>', '--latency-marker', MARKER, '-T', f'{args.duration:g}s'])}`):",
            "",
            "| round | tcpkali msg/s | p50 us | p90 | p99 | echo-load p99 / tcpkali p99 |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            lines.append(
                f"| {row['round']} | {row['kali_msgs_per_s']:,.0f} | {row['kali_p50']:.0f} | {row['kali_p90']:.0f} | "
                f"{row['kali_p99']:.0f} | {row['lat_p99'] / row['kali_p99']:.2f}x |"
            )
        ratio = statistics.median(row["lat_p99"] / row["kali_p99"] for row in rows)
        lines += [
            "",
            f"**echo-load p99 / tcpkali p99: median {ratio:.2f}x** (goal <= 1.5x). tcpkali reports in steps of "
            "0.1 ms and times a message from when its loop writes it, echo-load from when it was due.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
