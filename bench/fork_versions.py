"""``fork`` at another commit against this tree, side by side: did a change to the fork backend cost per message?

The throughput goal is against a reference server (bench/overhead.py); this one
answers a narrower question on a shared machine: this tree's ``--backend fork``
and the same backend exported from ``--commit`` (``git archive``) run
alternately (A/B, B/A) with the C client, and the medians of the per-pair ratios
are printed: wall clock, and server CPU per round trip (children included),
which holds up best when other jobs take the cores.

    python bench/fork_versions.py --commit 76cf789          # before the fork server
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from bench.overhead import CLIENT_CPU, SERVER_CPU, WORKLOADS, build_client, in_directory, measure, on_cpu  # noqa: E402
from echoserver.spawn import ServerProcess  # noqa: E402


def start(path: str | None) -> ServerProcess:
    server = ServerProcess("--backend", "fork", env={"PYTHONPATH": path} if path else None)
    with on_cpu(SERVER_CPU), in_directory(path):  # python -m puts the working directory first on sys.path
        server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commit", required=True, help="the commit to compare this tree with")
    parser.add_argument("--rounds", type=int, default=8, help="paired rounds per workload")
    args = parser.parse_args(argv)
    build_client()
    os.sched_setaffinity(0, {CLIENT_CPU})
    with tempfile.TemporaryDirectory() as old_tree:
        archive = subprocess.run(
            ["git", "-C", str(BENCH.parent), "archive", args.commit, "echoserver"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", old_tree], input=archive, check=True)
        old, new = start(old_tree), start(None)
        try:
            for name, (connections, size) in WORKLOADS.items():
                measure(old, connections, size, 0.5), measure(new, connections, size, 0.5)  # warm-up
                pairs = []
                for round_ in range(args.rounds):
                    order = (old, new) if round_ % 2 == 0 else (new, old)
                    got = {id(server): measure(server, connections, size, 1.0) for server in order}
                    pairs.append((got[id(old)], got[id(new)]))
                wall = statistics.median(n[0] / o[0] for o, n in pairs)
                cpu = statistics.median(o[1] / n[1] for o, n in pairs)
                busy = statistics.median(n[2] for _, n in pairs), statistics.median(o[2] for o, _ in pairs)
                print(
                    f"{name:<9} this tree / {args.commit}: wall {wall:.3f}x, by server CPU per round trip "
                    f"{cpu:.3f}x (CPU us {statistics.median(n[1] for _, n in pairs):.1f} vs "
                    f"{statistics.median(o[1] for o, _ in pairs):.1f}); server busy {busy[0]:.0%} / {busy[1]:.0%}",
                    flush=True,
                )
        finally:
            for server in (old, new):
                server.stop()
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
