"""Memory per idle connection on a free-threaded build, per backend, and what one subinterpreter costs.

PSS (proportional set size) of the server's whole process tree, so that fork's
children count and pages they share with the parent count once. Per
connection: (PSS with N idle connections - PSS with none) / N, each connection
having echoed one message (so that every backend really holds it). Per
subinterpreter: (PSS of ``--interpreters K`` - PSS of ``--interpreters 1``) / (K - 1),
no client connected.

    python bench/gil_memory.py --ft FT_VENV/bin/python --classic .venv/bin/python
"""

from __future__ import annotations

import argparse
import shlex
import socket
import statistics
import sys
import time

import psutil

from echoserver.spawn import ServerProcess

IDLE = 200
SUBINTERPRETERS = 5


def pss_kib(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0
    for process in (root, *root.children(recursive=True)):
        try:
            total += process.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return total / 1024


def settled_pss(pid: int) -> float:
    """PSS once it stops moving (threads and children starting up), median of the last readings."""
    readings = [pss_kib(pid)]
    for _ in range(40):
        time.sleep(0.1)  # sampling memory, not waiting for readiness
        readings.append(pss_kib(pid))
        if len(readings) >= 5 and max(readings[-5:]) - min(readings[-5:]) < 64:
            break
    return statistics.median(readings[-5:])


def per_connection(python: list[str], backend: str, idle: int = IDLE) -> float:
    # Pool and child limits above the count, so that every connection is really being served.
    with ServerProcess(
        "--backend",
        backend,
        "--log-level",
        "warning",
        "--max-children",
        str(idle + 50),
        "--pool-size",
        str(idle + 50),
        python=python,
    ) as server:
        before = settled_pss(server.pid)
        clients = []
        for i in range(idle):
            sock = socket.create_connection(server.address, timeout=30)
            sock.sendall(b"x")
            assert sock.recv(1) == b"x", f"{backend}: connection {i} not echoed"
            clients.append(sock)
        after = settled_pss(server.pid)
        for sock in clients:
            sock.close()
    return (after - before) / idle


def per_subinterpreter(python: list[str], count: int = SUBINTERPRETERS) -> float:
    sizes = []
    for n in (1, count):
        with ServerProcess(
            "--backend", "interpreters", "--interpreters", str(n), "--log-level", "warning", python=python
        ) as server:
            sizes.append(settled_pss(server.pid))
    return (sizes[1] - sizes[0]) / (count - 1)


def available(python: list[str]) -> list[str]:
    import subprocess

    out = subprocess.run(
        [*python, "-m", "echoserver", "--list-backends"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:2] == ["available"]]


def memory_table(ft: str, classic: str) -> list[str]:
    interpreters = {"free-threaded": shlex.split(ft), "classic": shlex.split(classic)}
    found = {name: available(python) for name, python in interpreters.items()}
    backends = [b for b in dict.fromkeys(found["free-threaded"] + found["classic"])]
    lines = [
        "## memory",
        "",
        f"KiB of PSS per idle connection ({IDLE} connections, each echoed once), whole process tree.",
        "",
        "| backend | free-threaded | classic |",
        "|---|---:|---:|",
    ]
    for backend in backends:
        cells = [
            f"{per_connection(interpreters[name], backend):,.1f}" if backend in found[name] else "-"
            for name in interpreters
        ]
        lines.append(f"| {backend} | {' | '.join(cells)} |")
        print(lines[-1], file=sys.stderr, flush=True)
    if "interpreters" in found["free-threaded"]:
        cost = per_subinterpreter(interpreters["free-threaded"])
        lines += [
            "",
            f"One subinterpreter (free-threaded build, no client): **{cost:,.0f} KiB** of PSS "
            f"(--interpreters {SUBINTERPRETERS} vs 1, per extra interpreter).",
        ]
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ft", required=True)
    parser.add_argument("--classic", default=sys.executable)
    args = parser.parse_args()
    print("\n".join(memory_table(args.ft, args.classic)))


if __name__ == "__main__":
    main()
