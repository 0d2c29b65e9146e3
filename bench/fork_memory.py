"""Where a forked Python child's memory goes: copy-on-write, one 4 KiB page at a time.

A child made by ``os.fork()`` shares every page with its parent until either
writes to it; then the kernel copies that page for the child. CPython writes to
an object whenever it *reads* it too: every reference taken or dropped changes
the object's reference count, which lives in the object. So a child's private
memory is roughly the number of distinct pages holding objects it touched,
times 4 KiB, and it grows with the Python code that runs in the child, not with
the data the child keeps.

This script measures that, each rung in a fresh interpreter, as the private
memory (``Private_Clean + Private_Dirty`` of ``/proc/PID/smaps_rollup``) of 20
children, median:

* children that run no code of their own after ``fork()`` (they block in a
  ``read``), forked from an interpreter that has imported nothing, then
  ``threading``, ``logging``, the echoserver fork backend: what the
  interpreter's own at-fork work costs (``threading`` and ``logging`` each
  register a handler that runs in every child);
* children that touch 2,000 objects of the parent's, packed together or
  spread one per page: the cost follows pages, not objects;
* children that serve one idle echo connection: the bare reference fork server
  and ``echoserver --backend fork``;

and what the copies cost in time: the server CPU per connection of both, over
400 sequential connections with one round trip each.

    python bench/fork_memory.py            # ~20 s; writes bench/results/fork_memory.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

RESULTS = BENCH / "results"
CHILDREN = 20
PAGE = 4096

# name -> (modules the parent imports, what each child does before it blocks)
FORKED = {
    "bare interpreter": ((), "idle"),
    "+ import threading": (("threading",), "idle"),
    "+ import logging": (("logging",), "idle"),
    "+ echoserver's fork backend imported": (("echoserver.cli", "echoserver.backends.fork"), "idle"),
    "bare, child touches 2,000 objects packed together": ((), "packed"),
    "bare, child touches 2,000 objects one per page": ((), "spread"),
}
TOUCHED = 2000


def private_kib(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        return sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty")))


# Runs as ``python -c`` so that the parent has imported only ``os`` and what the rung names
# (this script's own imports, ``subprocess`` among them, would bring ``threading`` in).
FORKED_PROGRAM = """
import os, sys, importlib
modules, work, children, touched, page = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), 4096
for module in filter(None, modules.split(",")):
    importlib.import_module(module)
# Integers above 256 are heap objects of 32 bytes: 128 to a page when allocated in a row.
objects = list(range(1000, 1000 + touched * page // 32)) if work != "idle" else []
objects = objects[:touched] if work == "packed" else objects[::page // 32][:touched]
ready_r, ready_w = os.pipe()
stop_r, stop_w = os.pipe()
pids = []
for _ in range(children):
    pid = os.fork()
    if pid == 0:
        os.close(stop_w)  # or the parent's close would never reach the children as EOF
        for item in objects:  # taking a reference writes the object's count: its page is copied
            pass
        os.write(ready_w, b"r")
        os.read(stop_r, 1)  # blocks in C: from here on the child writes nothing
        os._exit(0)
    pids.append(pid)
for _ in pids:
    os.read(ready_r, 1)
sizes = []
for pid in pids:
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        sizes.append(sum(int(line.split()[1]) for line in rollup
                         if line.startswith(("Private_Clean", "Private_Dirty"))))
os.close(stop_w)
for pid in pids:
    os.waitpid(pid, 0)
print(sizes)
"""


def forked_rung(modules: tuple[str, ...], work: str) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", FORKED_PROGRAM, ",".join(modules), work, str(CHILDREN), str(TOUCHED)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def serving_rung(kind: str) -> list[float]:
    """Private memory of each child of a fork server holding one idle connection (after one echo)."""
    from bench.overhead import Servers, _children, open_idle, wait_until

    with Servers() as servers:
        server = servers.start("fork", kind)
        socks = open_idle(server.port, CHILDREN, CHILDREN)
        try:
            wait_until(lambda: len(_children(server.pid)) >= CHILDREN, 20, f"{CHILDREN} children")
            return [private_kib(child.pid) for child in _children(server.pid)]
        finally:
            for sock in socks:
                sock.close()


CONNECTIONS = 400


def connection_cost(kind: str) -> float:
    """Server CPU microseconds per connection (connect, one 64 B round trip, close), children included."""
    import socket

    from bench.overhead import Servers, _children, cpu_seconds, wait_until

    def one_by_one(port: int, count: int) -> None:
        for _ in range(count):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"x" * 64)
                got = b""
                while len(got) < 64:
                    got += sock.recv(64) or b"!" * 64  # EOF: the length check below fails
                assert got == b"x" * 64, got

    with Servers() as servers:
        server = servers.start("fork", kind)
        one_by_one(server.port, 20)  # warm-up
        wait_until(lambda: not _children(server.pid), 10, "warm-up children to exit")
        before = cpu_seconds(server.pid)
        one_by_one(server.port, CONNECTIONS)
        wait_until(lambda: not _children(server.pid), 10, "children to exit")
        return (cpu_seconds(server.pid) - before) / CONNECTIONS * 1e6


def measure(name: str) -> list[float]:
    """Each rung in a fresh interpreter, so that no rung inherits another's imports."""
    done = subprocess.run([sys.executable, __file__, "--rung", name], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"rung {name!r} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


RUNGS = [*FORKED, "reference fork server, serving", "echoserver --backend fork, serving"]
COSTS = ["cost reference", "cost framework"]


def run_rung(name: str) -> list[float]:
    if name in FORKED:
        return forked_rung(*FORKED[name])
    if name.startswith("cost"):
        return [connection_cost(name.split()[-1])]
    return serving_rung("reference" if name.startswith("reference") else "framework")


def table(results: dict[str, list[float]]) -> str:
    base = statistics.median(results["bare interpreter"])
    rows = [
        "| children forked from | private KiB per child (median of 20) | pages copied over the bare child |",
        "|---|---|---|",
    ]
    for name, sizes in results.items():
        median = statistics.median(sizes)
        rows.append(f"| {name} | {median:,.0f} | {(median - base) * 1024 / PAGE:+,.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rung", choices=RUNGS + COSTS, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args(argv)
    if args.rung:
        print(json.dumps(run_rung(args.rung)))
        return 0
    started = datetime.datetime.now().astimezone()
    results = {}
    for name in RUNGS:
        results[name] = measure(name)
        print(f"  {name:<55} {statistics.median(results[name]):8,.0f} KiB", flush=True)
    costs = {kind: measure(f"cost {kind}")[0] for kind in ("reference", "framework")}
    cost_line = (
        f"Server CPU per connection ({CONNECTIONS} sequential connections, one 64 B round trip each, "
        f"children included): reference {costs['reference']:,.0f} us, "
        f"echoserver --backend fork {costs['framework']:,.0f} us."
    )
    print()
    print(table(results))
    print()
    print(cost_line)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "fork_memory.json").write_text(
            json.dumps(
                {
                    "date": started.isoformat(timespec="seconds"),
                    "command": "python bench/fork_memory.py",
                    "children": CHILDREN,
                    "python": platform.python_version(),
                    "kernel": platform.release(),
                    "private_kib": results,
                    "cpu_us_per_connection": costs,
                },
                indent=2,
            )
            + "\n"
        )
        (RESULTS / "fork_memory.md").write_text(f"""# Where a forked child's memory goes

{table(results)}

Private memory is `Private_Clean + Private_Dirty` from `/proc/PID/smaps_rollup`: the pages the
child no longer shares with anyone, each a 4 KiB copy made when the child (or its parent) wrote to
a shared page. "Idle" children run no Python code of their own after `fork()`; what they still
pay is the interpreter's at-fork work, including the handlers that `threading` and `logging`
register. Serving children did one round trip and hold an idle connection.

{cost_line}

- Command: `python bench/fork_memory.py`
- Date: {started.isoformat(timespec="seconds")}; Python {platform.python_version()}, Linux {platform.release()}
""")
        print(f"\nwritten: {RESULTS / 'fork_memory.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
