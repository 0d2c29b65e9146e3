"""Is echo-load fast enough to measure the fastest backend? Compare it with a compiled client.

    python bench/loadgen_vs_c.py                       # 7 rounds x 3 s, 20 connections x 64 B
    python bench/loadgen_vs_c.py --rounds 9 --duration 5 --markdown bench/results/loadgen_vs_c.md

Starts the C epoll echo server ``bench/c/epoll_server.c`` (or, with
``--server uvloop`` etc., an ``echoserver`` backend) pinned to one core, builds
``bench/c/epoll_client.c`` with gcc into ``bench/build/``, then runs, in turn and
each pinned to the *other* core: the C epoll client, ``echo-load`` (default
engine, whose closed loop is compiled when the install built it), ``echo-load
--hot-loop python`` (the same engine all in Python) and ``echo-load --engine
blocking`` (one blocking thread per connection, the tutorial design). The rounds
alternate so that a noisy neighbour hits all alike; the figure of merit is each
round's ratio to the C client's rate in the same round, and its median over the
rounds. With a C server the clients are the bottleneck, so the ratio measures
them. Goal: echo-load >= 0.9x the C client.
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

from bench.cclient import CLIENT_BINARY, build_client, build_server  # noqa: E402
from echoserver.spawn import ServerProcess  # noqa: E402


class CServer:
    """``bench/build/epoll-server`` on a free loopback port, stopped by PID."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([str(build_server()), "0"], stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # "ready PORT": it listens before it says so
        if not line.startswith("ready "):
            self.stop()
            sys.exit(f"loadgen_vs_c: the C server did not start ({line!r})")
        self.address, self.pid = ("127.0.0.1", int(line.split()[1])), self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
    parser.add_argument("--server", default="c", help="c (bench/c/epoll_server.c) or an echoserver backend")
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
        if args.server == "c":
            server = CServer()
        else:
            server = ServerProcess("--backend", args.server, "--log-level", "warning").start()
    finally:
        os.sched_setaffinity(0, everything)
    rows = []
    try:
        for round_ in range(1, args.rounds + 1):
            c = run_c(server.address, args, client_core)
            fast = run_echo_load(server.address, args, client_core, server.pid)
            python = run_echo_load(server.address, args, client_core, server.pid, "--hot-loop", "python")
            classic = run_echo_load(server.address, args, client_core, server.pid, "--engine", "blocking")
            rows.append(
                {
                    "round": round_,
                    "c": c["msgs_per_s"],
                    "echo_load": fast["msgs_per_s"],
                    "hot_loop": fast.get("hot_loop"),
                    "python": python["msgs_per_s"],
                    "python_cpu_us": _echo_load_cpu_us(python),
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


def _ratios(rows: list[dict], key: str) -> str:
    values = [row[key] / row["c"] for row in rows]
    return f"median {statistics.median(values):.2f}x (min {min(values):.2f}, max {max(values):.2f})"


def _row(row: dict) -> str:
    return (
        f"round {row['round']}: C {row['c']:>10,.0f}  echo-load {row['echo_load']:>10,.0f} "
        f"({row['echo_load'] / row['c']:.2f}x, {row['hot_loop']})  python {row['python']:>10,.0f} "
        f"({row['python'] / row['c']:.2f}x)  blocking {row['blocking']:>10,.0f} "
        f"({row['blocking'] / row['c']:.2f}x)  msg/s;  CPU us/msg: C {row['c_cpu_us']:.2f}  "
        f"echo-load {row['echo_load_cpu_us']:.2f}  python {row['python_cpu_us']:.2f}  blocking {row['blocking_cpu_us']:.2f}"
    )


def report(rows: list[dict], args, load_before: tuple, load_after: tuple) -> str:
    command = " ".join(["python", "bench/loadgen_vs_c.py", *sys.argv[1:]])
    server = (
        "the C epoll echo server `bench/c/epoll_server.c`"
        if args.server == "c"
        else f"`echoserver --backend {args.server}`"
    )
    loops = sorted({str(row["hot_loop"]) for row in rows})
    lines = [
        "# echo-load vs a compiled epoll client",
        "",
        f"`{command}`",
        "",
        f"Server: {server}, pinned to one core; each client pinned in turn to the other core; "
        f"{args.clients} connections x {args.size} B, closed loop, {args.duration:g} s per run after "
        f"{args.warmup:g} s warmup, {len(rows)} alternating rounds. *echo-load* is the default engine "
        f"(its closed loop: {', '.join(loops)}); *python* is the same engine with `--hot-loop python`; "
        "*blocking* is `--engine blocking`, a thread per connection.",
        "",
        "| round | C client msg/s | echo-load msg/s | ratio | python msg/s | ratio | blocking msg/s | ratio "
        "| CPU us/msg: C | echo-load | python | blocking | server CPU % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['round']} | {row['c']:,.0f} | {row['echo_load']:,.0f} | {row['echo_load'] / row['c']:.2f} | "
            f"{row['python']:,.0f} | {row['python'] / row['c']:.2f} | "
            f"{row['blocking']:,.0f} | {row['blocking'] / row['c']:.2f} | {row['c_cpu_us']:.2f} | "
            f"{row['echo_load_cpu_us']:.2f} | {row['python_cpu_us']:.2f} | "
            f"{row['blocking_cpu_us']:.2f} | {_pct(row['server_cpu'])} |"
        )
    cost = {
        key: statistics.median(row[key] for row in rows)
        for key in ("c_cpu_us", "echo_load_cpu_us", "python_cpu_us", "blocking_cpu_us")
    }
    cpu_ratio = [row["c_cpu_us"] / row["echo_load_cpu_us"] for row in rows]
    lines += [
        "",
        f"**Throughput, echo-load / C: {_ratios(rows, 'echo_load')}**, goal >= 0.90x; **CPU per message, "
        f"C / echo-load: median {statistics.median(cpu_ratio):.2f}x** (min {min(cpu_ratio):.2f}, "
        f"max {max(cpu_ratio):.2f}), the throughput ratio the two would have on a core each had to itself.",
        "",
        f"`--hot-loop python` / C: {_ratios(rows, 'python')}; blocking thread-per-connection / C: "
        f"{_ratios(rows, 'blocking')}.",
        "",
        f"Load average (1 min) before and after: {load_before[0]:.1f}, {load_after[0]:.1f} on "
        f"{os.cpu_count()} CPUs. On a shared machine the rates swing with the neighbours (server CPU below "
        "100% means the server did not get its whole core); the CPU each client spends per message moves "
        "much less, and says how fast each could go on a core of its own.",
        "",
        f"Client CPU per message (median): C {cost['c_cpu_us']:.2f} us, echo-load {cost['echo_load_cpu_us']:.2f} us, "
        f"python loop {cost['python_cpu_us']:.2f} us, blocking {cost['blocking_cpu_us']:.2f} us.",
    ]
    return "\n".join(lines)


def _pct(value) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    main()
