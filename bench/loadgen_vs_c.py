"""Is echo-load fast enough to measure the fastest backend? Compare it with a compiled client.

    python bench/loadgen_vs_c.py                       # 7 rounds x 3 s, 20 connections x 64 B
    python bench/loadgen_vs_c.py --rounds 9 --duration 5 --markdown bench/results/loadgen_vs_c.md

Starts one ``echoserver --backend uvloop`` pinned to one core, builds
``bench/c/epoll_client.c`` with gcc into ``bench/build/``, then runs, in turn and
each pinned to the *other* core: the C epoll client, ``echo-load`` (default
engine) and ``echo-load --engine blocking`` (one blocking thread per
connection, the tutorial design). The rounds alternate so that a noisy
neighbour hits all three alike; the figure of merit is each round's ratio to
the C client's rate in the same round, and its median over the rounds.
Goal: echo-load >= 0.9x the C client.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cclient import CLIENT_BINARY, build_client  # noqa: E402
from echoserver.spawn import ServerProcess  # noqa: E402


def pinned(core: int):
    return lambda: os.sched_setaffinity(0, {core})


def run_c(address: tuple, args, core: int) -> dict:
    out = subprocess.run(
        [
            str(CLIENT_BINARY),
            "--warmup",
            str(args.warmup),
            address[0],
            str(address[1]),
            str(args.clients),
            str(args.size),
            str(args.duration),
        ],
        capture_output=True,
        text=True,
        preexec_fn=pinned(core),
        check=True,
    )
    return json.loads(out.stdout)


def echo_load_json(address: tuple, core: int, *args: str, tool: str, strict: bool = True) -> dict:
    """``echo-load ... --json --quiet`` pinned to ``core``; its result. ``strict``: exit 1 (a lost or
    wrong byte) stops the benchmark too; otherwise only a run that printed no result does."""
    command = [
        sys.executable,
        "-m",
        "echoclients.load.cli",
        "--host",
        address[0],
        "--port",
        str(address[1]),
        *args,
        "--json",
        "--quiet",
    ]
    out = subprocess.run(command, capture_output=True, text=True, preexec_fn=pinned(core), cwd=ROOT)
    if (strict and out.returncode != 0) or not out.stdout.strip():
        sys.exit(f"{tool}: echo-load failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def run_echo_load(address: tuple, args, core: int, server_pid: int, *extra: str) -> dict:
    return echo_load_json(
        address,
        core,
        "--clients",
        str(args.clients),
        "--size",
        str(args.size),
        "--warmup",
        str(args.warmup),
        "--duration",
        str(args.duration),
        "--server-pid",
        str(server_pid),
        *extra,
        tool="loadgen_vs_c",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--backend", default="uvloop")
    parser.add_argument("--markdown", type=Path, help="Also write the results as Markdown to this file.")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("loadgen_vs_c: needs two cores (one for the server, one for the clients)")
    server_core, client_core = cores[1], cores[0]
    build_client()
    load_before = os.getloadavg()

    everything = set(cores)
    os.sched_setaffinity(0, {server_core})  # the server inherits it
    try:
        server = ServerProcess("--backend", args.backend, "--log-level", "warning").start()
    finally:
        os.sched_setaffinity(0, everything)
    rows = []
    try:
        for round_ in range(1, args.rounds + 1):
            c = run_c(server.address, args, client_core)
            fast = run_echo_load(server.address, args, client_core, server.pid)
            classic = run_echo_load(server.address, args, client_core, server.pid, "--engine", "blocking")
            rows.append(
                {
                    "round": round_,
                    "c": c["msgs_per_s"],
                    "echo_load": fast["msgs_per_s"],
                    "blocking": classic["msgs_per_s"],
                    "c_cpu_us": _cpu_us(c["cpu_s"], c["messages"]),
                    "echo_load_cpu_us": _echo_load_cpu_us(fast),
                    "blocking_cpu_us": _echo_load_cpu_us(classic),
                    "server_cpu": (fast.get("server") or {}).get("cpu_percent"),
                }
            )
            print(_row(rows[-1]), flush=True)
    finally:
        server.stop()
    text = report(rows, args, load_before, os.getloadavg())
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")


def _cpu_us(cpu_s: float, messages: int) -> float:
    return 1e6 * cpu_s / messages if messages else float("nan")


def _echo_load_cpu_us(result: dict) -> float:
    """CPU microseconds per message: the client's own cost, which a noisy neighbour barely moves."""
    return _cpu_us(result["cpu"]["client_percent"] / 100 * result["duration_s"], result["messages"])


def _row(row: dict) -> str:
    return (
        f"round {row['round']}: C {row['c']:>10,.0f}  echo-load {row['echo_load']:>10,.0f} "
        f"({row['echo_load'] / row['c']:.2f}x)  blocking {row['blocking']:>10,.0f} "
        f"({row['blocking'] / row['c']:.2f}x)  msg/s;  CPU us/msg: C {row['c_cpu_us']:.2f}  "
        f"echo-load {row['echo_load_cpu_us']:.2f}  blocking {row['blocking_cpu_us']:.2f}"
    )


def report(rows: list[dict], args, load_before: tuple, load_after: tuple) -> str:
    fast = [row["echo_load"] / row["c"] for row in rows]
    classic = [row["blocking"] / row["c"] for row in rows]
    command = " ".join(["python", "bench/loadgen_vs_c.py", *sys.argv[1:]])
    lines = [
        "# echo-load vs a compiled epoll client",
        "",
        f"`{command}`",
        "",
        f"Server: `echoserver --backend {args.backend}` pinned to one core; each client pinned in turn to the "
        f"other core; {args.clients} connections x {args.size} B, closed loop, {args.duration:g} s per run "
        f"after {args.warmup:g} s warmup, {len(rows)} alternating rounds.",
        "",
        "| round | C client msg/s | echo-load msg/s | ratio | blocking msg/s | ratio "
        "| CPU us/msg: C | echo-load | blocking | server CPU % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, f, c in zip(rows, fast, classic):
        lines.append(
            f"| {row['round']} | {row['c']:,.0f} | {row['echo_load']:,.0f} | {f:.2f} | "
            f"{row['blocking']:,.0f} | {c:.2f} | {row['c_cpu_us']:.2f} | {row['echo_load_cpu_us']:.2f} | "
            f"{row['blocking_cpu_us']:.2f} | {_pct(row['server_cpu'])} |"
        )
    cost = {
        key: statistics.median(row[key] for row in rows) for key in ("c_cpu_us", "echo_load_cpu_us", "blocking_cpu_us")
    }
    cpu_ratio = [row["c_cpu_us"] / row["echo_load_cpu_us"] for row in rows]
    lines += [
        "",
        f"**Throughput, echo-load / C: median {statistics.median(fast):.2f}x** (min {min(fast):.2f}, "
        f"max {max(fast):.2f}), goal >= 0.90x; **CPU per message, C / echo-load: median "
        f"{statistics.median(cpu_ratio):.2f}x** (min {min(cpu_ratio):.2f}, max {max(cpu_ratio):.2f}), the "
        "throughput ratio the two would have on a core each had to itself.",
        "",
        f"echo-load / C: median {statistics.median(fast):.2f}x (min {min(fast):.2f}, max {max(fast):.2f}); "
        f"blocking thread-per-connection / C: median {statistics.median(classic):.2f}x "
        f"(min {min(classic):.2f}, max {max(classic):.2f}). Goal: echo-load >= 0.90x.",
        "",
        f"Load average (1 min) before and after: {load_before[0]:.1f}, {load_after[0]:.1f} on "
        f"{os.cpu_count()} CPUs. On a shared machine the rates swing with the neighbours (server CPU below "
        "100% means the server did not get its whole core); the CPU each client spends per message moves "
        "much less, and says how fast each could go on a core of its own.",
        "",
        f"Client CPU per message (median): C {cost['c_cpu_us']:.2f} us, echo-load {cost['echo_load_cpu_us']:.2f} us, "
        f"blocking {cost['blocking_cpu_us']:.2f} us. At 100% of its core, echo-load could drive "
        f"{1e6 / cost['echo_load_cpu_us']:,.0f} msg/s and the blocking client {1e6 / cost['blocking_cpu_us']:,.0f}.",
    ]
    return "\n".join(lines)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
