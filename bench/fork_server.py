"""What a connection costs on ``fork``: echoserver's fork server against socketserver and the bare loop.

Three servers, measured in one run, in rotating order (A/B/C, B/C/A, C/A/B,
...), each round on fresh servers pinned to one core with the client on the
other:

* ``echoserver --backend fork`` (connection processes forked by its fork server);
* ``socketserver.ForkingTCPServer`` (``bench/reference/socketserver_fork_server.py``),
  what a user would pick instead: the bar (goal: <= 1.0x its memory);
* the bare ``os.fork`` loop that imports nothing (``bench/reference/fork_server.py``),
  the limit of this model in CPython.

Figures:

* PSS per idle connection: N connections each make one 1-byte round trip and
  stay open; the growth of the PSS summed over the server and all its
  descendants, divided by N;
* connection set-up: for sequential connections, the time from ``connect()``
  to the first echoed byte (the fork server adds a hop: accept, send the socket
  over, fork, reply); median and 90th percentile;
* server CPU per connection over those set-ups (children included).

    python bench/fork_server.py                  # ~2 minutes; writes bench/results/fork_server.{md,json}
    python bench/fork_server.py --rounds 2 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from bench.overhead import (  # noqa: E402
    CLIENT_CPU,
    RESULTS,
    Servers,
    connection_children,
    cpu_seconds,
    idle_bytes_per_connection,
    machine_note,
    wait_until,
)

SERVERS = {  # label -> (backend, kind, reference file stem)
    "echoserver --backend fork": ("fork", "framework", None),
    "socketserver.ForkingTCPServer": ("fork", "reference", "socketserver_fork"),
    "bare os.fork loop": ("fork", "reference", "fork"),
}
FRAMEWORK, SOCKETSERVER, BARE = SERVERS


def setup_times(port: int, count: int) -> list[float]:
    """Seconds from ``connect()`` to the first echoed byte, for ``count`` connections one after another."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise RuntimeError("the first echo did not come back")
            times.append(time.perf_counter() - started)
    return times


def measure_round(label: str, args, servers: Servers) -> dict:
    backend, kind, reference = SERVERS[label]
    server = servers.start(backend, kind, reference)
    try:
        memory = idle_bytes_per_connection(server, backend, args.idle)
        wait_until(lambda: not connection_children(server.pid), 20, "idle connections' processes to exit")
        setup_times(server.port, 20)  # warm-up
        wait_until(lambda: not connection_children(server.pid), 20, "warm-up processes to exit")
        before = cpu_seconds(server.pid)
        times = setup_times(server.port, args.connections)
        wait_until(lambda: not connection_children(server.pid), 20, "connection processes to exit")
        cpu = (cpu_seconds(server.pid) - before) / args.connections
    finally:
        servers.stop(server)
    return {"pss_per_connection": memory, "setup_s": times, "cpu_s_per_connection": cpu}


def summarize(rounds: dict[str, list[dict]]) -> dict:
    out = {}
    for label, runs in rounds.items():
        setups = sorted(t for run in runs for t in run["setup_s"])
        out[label] = {
            "pss_kib": [run["pss_per_connection"] / 1024 for run in runs],
            "pss_kib_median": statistics.median(run["pss_per_connection"] / 1024 for run in runs),
            "setup_us_median": statistics.median(setups) * 1e6,
            "setup_us_p90": setups[int(len(setups) * 0.9)] * 1e6,
            "cpu_us_per_connection": [run["cpu_s_per_connection"] * 1e6 for run in runs],
            "cpu_us_median": statistics.median(run["cpu_s_per_connection"] * 1e6 for run in runs),
        }
    return out


def table(summary: dict) -> str:
    ours, bar, bare = summary[FRAMEWORK], summary[SOCKETSERVER], summary[BARE]
    rows = [
        "| server | KiB PSS per idle connection (rounds) | median | connect -> first echo, median / p90 (us) "
        "| server CPU per connection (us) |",
        "|---" * 5 + "|",
    ]
    for label, s in summary.items():
        rounds = ", ".join(f"{v:,.0f}" for v in s["pss_kib"])
        rows.append(
            f"| {label} | {rounds} | {s['pss_kib_median']:,.0f} | {s['setup_us_median']:,.0f} / "
            f"{s['setup_us_p90']:,.0f} | {s['cpu_us_median']:,.0f} |"
        )
    rows += ["", "| echoserver fork, as a ratio to | memory | set-up (median) | CPU per connection |", "|---" * 4 + "|"]
    for label, other in ((SOCKETSERVER, bar), (BARE, bare)):
        rows.append(
            f"| {label} | **{ours['pss_kib_median'] / other['pss_kib_median']:.2f}x** | "
            f"{ours['setup_us_median'] / other['setup_us_median']:.2f}x | "
            f"{ours['cpu_us_median'] / other['cpu_us_median']:.2f}x |"
        )
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per server, on fresh servers")
    parser.add_argument("--idle", type=int, default=50, help="idle connections for the memory figure")
    parser.add_argument("--connections", type=int, default=200, help="sequential connections for set-up times")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python", "bench/fork_server.py", *(sys.argv[1:] if argv is None else argv)])
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two cores: one for the servers, one for the client")
    started, note = datetime.datetime.now().astimezone(), machine_note()
    os.sched_setaffinity(0, {CLIENT_CPU})
    labels, rounds = list(SERVERS), {label: [] for label in SERVERS}
    with Servers() as servers:
        for round_ in range(args.rounds):
            order = labels[round_ % 3 :] + labels[: round_ % 3]  # rotate: each server goes first in turn
            for label in order:
                result = measure_round(label, args, servers)
                rounds[label].append(result)
                print(
                    f"round {round_ + 1} {label:<30} {result['pss_per_connection'] / 1024:7.0f} KiB/conn, set-up "
                    f"{statistics.median(result['setup_s']) * 1e6:6.0f} us, "
                    f"CPU {result['cpu_s_per_connection'] * 1e6:6.0f} us/conn",
                    flush=True,
                )
    summary = summarize(rounds)
    text = table(summary)
    print()
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "fork_server.json").write_text(
            json.dumps(
                {
                    "date": started.isoformat(timespec="seconds"),
                    "command": command,
                    "settings": vars(args),
                    "machine": note,
                    "summary": summary,
                    "rounds": rounds,
                },
                indent=2,
            )
            + "\n"
        )
        load = ", ".join(f"{x:.2f}" for x in note["load_average_at_start"])
        (
            RESULTS / "fork_server.md"
        ).write_text(f"""# fork: what a connection costs, against socketserver and the bare loop

{text}

Memory: PSS summed over the server and all its descendants (fork server included), growth with
{args.idle} idle connections (one 1-byte round trip each) divided by {args.idle}; the median of
{args.rounds} rounds on fresh servers. Set-up: {args.connections} sequential connections per round,
`connect()` to the first echoed byte, measured by the client; CPU: the server's, children included,
over those connections. Servers ran in rotating order, pinned to one core, the client on the other.

- Command: `{command}`
- Date: {started.isoformat(timespec="seconds")}; framework at `{note["framework_commit"]}`
- Machine: {note["cpus"]} cores ({note["cpu_model"] or "unknown CPU"}), Linux {note["kernel"]}, Python
  {note["python"]}. Shared with other jobs (load average {load} at the start): absolute figures drift
  between runs; rounds alternate and medians are reported so that drift hits all three alike.
""")
        print(f"\nwritten: {RESULTS / 'fork_server.md'}, {RESULTS / 'fork_server.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
