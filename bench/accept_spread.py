"""How ``--workers 2`` shares 20 connections that arrive in one burst: one shared socket, or --reuse-port.

With one listening socket shared by every worker, the kernel hands each new
connection to whichever worker is waiting in accept/epoll first; a worker
that wakes up for a burst often takes most of it. With ``--reuse-port`` each
worker has its own socket and the kernel hashes connections over them.
Runs are interleaved (shared, reuse-port, shared, ...); the figure is the
busiest worker's share of the connections, from the workers' stop lines.

    python bench/accept_spread.py --rounds 5 --markdown bench/results/accept_spread.md
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

from echoserver.spawn import ServerProcess

STOPPED = re.compile(r"worker \d+ stopped: ([\d,]+) connection")


def one_run(backend: str, reuse: bool, clients: int) -> list[int]:
    """Connections each worker served while echo-load ran ``clients`` connections once."""
    server = ServerProcess(
        "--backend", backend, "--workers", "2", "--log-level", "info", *(["--reuse-port"] if reuse else [])
    ).start()
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "echoclients.load.cli",
                "--port",
                str(server.port),
                "--clients",
                str(clients),
                "--duration",
                "1",
                "--warmup",
                "0.2",
                "--quiet",
            ],
            capture_output=True,
            timeout=60,
        )
    finally:
        server.stop()
    return sorted((int(n.replace(",", "")) for n in STOPPED.findall(server.stderr)), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="asyncio,uvloop,gevent,thread,threadpool")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--markdown", default="")
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        splits = {False: [], True: []}
        for _ in range(args.rounds):
            for reuse in (False, True):
                splits[reuse].append(one_run(backend, reuse, args.clients))
        cells = []
        for reuse in (False, True):
            shares = [s[0] / sum(s) for s in splits[reuse] if s and sum(s)]
            text = " ".join("/".join(map(str, s)) for s in splits[reuse])
            cells.append(f"{statistics.median(shares):.0%} (worst {max(shares):.0%}) | {text}")
        rows.append(f"| {backend} | {cells[0]} | {cells[1]} |")
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            f"`python bench/accept_spread.py --rounds {args.rounds} --clients {args.clients}` "
            f"({time.strftime('%Y-%m-%d')}, 2 shared CPUs, busy machine)",
            "",
            "| backend | shared socket: busiest worker's share, median | per-run split | --reuse-port: busiest share |"
            " per-run split |",
            "|---|---:|---|---:|---|",
            *rows,
            "",
        ]
    )
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(table)
    print(table)


if __name__ == "__main__":
    main()
