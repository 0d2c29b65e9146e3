"""What the framework costs over hand-written code: each backend against its bare reference.

For every backend, ``python -m echoserver --backend NAME`` and the matching
``bench/reference/NAME_server.py`` run alternately in one run (A/B, B/A, ...),
so that the machine's drift hits both alike and only the per-pair ratios are
reported. Servers are pinned to one core, the C client (``bench/c``) to the other.

* Throughput: closed loop (send a message, read the whole echo, repeat),
  20 connections x 64 B and 200 connections x 1 KiB; the median of the
  per-pair ratios framework/reference. Goal: >= 0.95.
* Memory per idle connection: open N connections (one round trip each, then
  idle) and divide the server's growth by N: RSS for one-process servers, PSS
  summed over the server and its children for ``fork``. Goal: <= 1.2x.

    python bench/overhead.py                 # everything, ~4 minutes
    python bench/overhead.py --backends uvloop,asyncio --rounds 3 --no-write
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from echoserver.process import ServerProcess  # noqa: E402

CLIENT_SOURCE = BENCH / "c" / "epoll_client.c"
CLIENT_BINARY = BENCH / "build" / "epoll-client"
RESULTS = BENCH / "results"
BACKENDS = ("thread", "threadpool", "fork", "gevent", "asyncio", "uvloop")
WORKLOADS = {"20x64B": (20, 64), "200x1KiB": (200, 1024)}
THROUGHPUT_GOAL, MEMORY_GOAL = 0.95, 1.2
SERVER_CPU, CLIENT_CPU = 0, 1
POOL_SIZE = 64  # threadpool: connections beyond the pool are accepted but never read while idle


# -- the client ------------------------------------------------------------------------------

def build_client() -> Path:
    """Compile the epoll client into bench/build/ unless an up-to-date binary is there."""
    if not CLIENT_BINARY.exists() or CLIENT_BINARY.stat().st_mtime < CLIENT_SOURCE.stat().st_mtime:
        CLIENT_BINARY.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-o", str(CLIENT_BINARY), str(CLIENT_SOURCE)], check=True)
    return CLIENT_BINARY


def run_client(port: int, connections: int, size: int, seconds: float) -> float:
    """Round trips per second; fails loudly on any error or corrupted byte."""
    done = subprocess.run([str(CLIENT_BINARY), "127.0.0.1", str(port), str(connections), str(size), str(seconds)],
                          capture_output=True, text=True, timeout=seconds + 60)
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    if done.returncode != 0 or not result.get("messages"):
        raise RuntimeError(f"epoll-client failed ({done.returncode}): {done.stdout.strip()} {done.stderr.strip()}")
    return result["msgs_per_s"]


# -- the servers -----------------------------------------------------------------------------

@contextlib.contextmanager
def on_cpu(cpu: int):
    """Run the calling thread (and whatever it starts) on one core, then go back."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class ReferenceServer:
    """``bench/reference/NAME_server.py PORT``, ready when it prints ``listening on 127.0.0.1:PORT``."""

    def __init__(self, backend: str) -> None:
        self.args = [sys.executable, str(BENCH / "reference" / f"{backend}_server.py"), "0"]
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> "ReferenceServer":
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if found and not ready.is_set():
                    self.port = int(found[1])
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            raise RuntimeError(f"reference server did not become ready: {' '.join(self.args)}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Servers:
    """Every server this run starts, pinned to SERVER_CPU; all stopped (children too) on exit."""

    def __init__(self, framework_path: str | None = None) -> None:
        self.started: list = []
        # Measure another copy of the package (a proposed change) instead of the installed one.
        self.env = {"PYTHONPATH": os.path.abspath(framework_path)} if framework_path else None

    def start(self, backend: str, kind: str):
        if kind == "framework":
            server = ServerProcess("--backend", backend, env=self.env)
        else:
            server = ReferenceServer(backend)
        with on_cpu(SERVER_CPU):
            server.start()
        self.started.append(server)
        return server

    def stop(self, server) -> None:
        children = _children(server.pid)
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - a server that will not stop is killed below
            pass
        finally:
            if hasattr(server, "kill"):
                server.kill()
            for child in children:  # the reference fork server's children outlive their parent
                with contextlib.suppress(psutil.Error):
                    child.kill()
            if server in self.started:
                self.started.remove(server)

    def __enter__(self) -> "Servers":
        return self

    def __exit__(self, *exc: object) -> None:
        for server in list(self.started):
            self.stop(server)


def _children(pid: int) -> list:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


# -- memory per idle connection --------------------------------------------------------------

def pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        return int(re.search(r"^Pss:\s+(\d+) kB", rollup.read(), re.M)[1]) * 1024


def memory(pid: int, forking: bool) -> int:
    """RSS of a one-process server; PSS of a forking server and all its children."""
    if not forking:
        return psutil.Process(pid).memory_info().rss
    total = 0
    for p in [pid] + [child.pid for child in _children(pid)]:
        with contextlib.suppress(OSError):
            total += pss(p)
    return total


def open_idle(port: int, count: int, echoes: int, timeout: float = 20.0) -> list[socket.socket]:
    """``count`` connections, each sends one byte; waits until ``echoes`` of them got it back."""
    socks, sel = [], selectors.DefaultSelector()
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(sock)
            sock.sendall(b"x")
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        got, deadline = 0, time.monotonic() + timeout
        while got < echoes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {got} of {echoes} idle connections were echoed")
            for key, _ in sel.select(0.5):
                if key.fileobj.recv(16) == b"x":
                    got += 1
                sel.unregister(key.fileobj)
        return socks
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    finally:
        sel.close()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def idle_bytes_per_connection(server, backend: str, count: int) -> float:
    """Growth of the server's memory with ``count`` idle connections, divided by ``count``."""
    forking, proc = backend == "fork", psutil.Process(server.pid)
    for sock in open_idle(server.port, 8, 8):  # warm-up: lazily built state is not per-connection cost
        sock.close()
    if forking:
        wait_until(lambda: not _children(server.pid), 10, "warm-up children to exit")
    time.sleep(0.3)
    fds, before = proc.num_fds(), memory(server.pid, forking)
    socks = open_idle(server.port, count, min(count, POOL_SIZE) if backend == "threadpool" else count)
    try:
        if forking:
            wait_until(lambda: len(_children(server.pid)) >= count, 20, f"{count} children")
        else:
            wait_until(lambda: proc.num_fds() >= fds + count, 20, f"{count} accepted connections")
        time.sleep(0.3)
        return (memory(server.pid, forking) - before) / count
    finally:
        for sock in socks:
            sock.close()


# -- one backend against its reference ------------------------------------------------------

def compare(backend: str, args, servers: Servers) -> dict:
    result = {"throughput": {}, "memory": {}}
    idle = args.idle_fork if backend == "fork" else args.idle
    fw_mem, ref_mem = [], []
    for round_ in range(args.memory_rounds):  # fresh servers each time: growth from a clean start
        for kind in (("framework", "reference") if round_ % 2 == 0 else ("reference", "framework")):
            server = servers.start(backend, kind)
            try:
                value = idle_bytes_per_connection(server, backend, idle)
            finally:
                servers.stop(server)
            (fw_mem if kind == "framework" else ref_mem).append(value)
    result["memory"] = {"connections": idle, "framework_bytes": fw_mem, "reference_bytes": ref_mem,
                        "ratio": statistics.median(fw_mem) / statistics.median(ref_mem)}
    print(f"  {backend:<10} idle memory: {statistics.median(fw_mem) / 1024:7.1f} KiB vs "
          f"{statistics.median(ref_mem) / 1024:7.1f} KiB per connection -> {result['memory']['ratio']:.2f}x", flush=True)

    framework, reference = servers.start(backend, "framework"), servers.start(backend, "reference")
    try:
        for name, (connections, size) in WORKLOADS.items():
            run = lambda server, seconds: run_client(server.port, connections, size, seconds)  # noqa: E731
            run(framework, 0.5), run(reference, 0.5)  # warm-up, not counted
            fw, ref = [], []
            for round_ in range(args.rounds):  # A/B, then B/A: a drift within the pair cancels out
                if round_ % 2 == 0:
                    fw.append(run(framework, args.seconds)), ref.append(run(reference, args.seconds))
                else:
                    ref.append(run(reference, args.seconds)), fw.append(run(framework, args.seconds))
            ratios = [a / b for a, b in zip(fw, ref)]
            result["throughput"][name] = {"framework_msgs_per_s": fw, "reference_msgs_per_s": ref,
                                          "ratios": ratios, "ratio": statistics.median(ratios)}
            print(f"  {backend:<10} {name:<9} {statistics.median(fw):9.0f} vs {statistics.median(ref):9.0f} msg/s"
                  f" -> {statistics.median(ratios):.3f}x (pairs: {', '.join(f'{r:.3f}' for r in ratios)})", flush=True)
    finally:
        servers.stop(framework)
        servers.stop(reference)
    return result


# -- report ----------------------------------------------------------------------------------

def verdict(result: dict) -> str:
    misses = [f"throughput {name}" for name, t in result["throughput"].items() if t["ratio"] < THROUGHPUT_GOAL]
    if result["memory"]["ratio"] > MEMORY_GOAL:
        misses.append("memory")
    return "meets both goals" if not misses else "misses: " + ", ".join(misses)


def table(results: dict) -> str:
    names = list(WORKLOADS)
    head = ["backend"] + [f"{n} msg/s (framework / reference)" for n in names] + [f"{n} ratio" for n in names]
    head += ["idle KiB/conn (framework / reference)", "memory ratio", "goals (>= 0.95x, <= 1.2x)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for backend, r in results.items():
        t, m = r["throughput"], r["memory"]
        cells = [f"`{backend}`"]
        cells += [f"{statistics.median(t[n]['framework_msgs_per_s']):,.0f} / "
                  f"{statistics.median(t[n]['reference_msgs_per_s']):,.0f}" for n in names]
        cells += [f"**{t[n]['ratio']:.3f}x**" for n in names]
        cells += [f"{statistics.median(m['framework_bytes']) / 1024:.1f} / "
                  f"{statistics.median(m['reference_bytes']) / 1024:.1f} ({m['connections']} conns)",
                  f"**{m['ratio']:.2f}x**", verdict(r)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def machine_note() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = found[1] if found else ""
    versions = {}
    for package in ("gevent", "uvloop"):
        with contextlib.suppress(ImportError):
            versions[package] = __import__(package).__version__
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), **versions, "load_average_at_start": os.getloadavg()}


def write_results(results: dict, args, command: str, started: datetime.datetime, note: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "no_write"}
    command += "" if not args.framework_path else "  # (framework from --framework-path)"
    (RESULTS / "overhead.json").write_text(json.dumps(
        {"date": started.isoformat(timespec="seconds"), "command": command, "settings": settings,
         "machine": note, "goals": {"throughput_ratio_min": THROUGHPUT_GOAL, "memory_ratio_max": MEMORY_GOAL},
         "results": results}, indent=2) + "\n")
    load = ", ".join(f"{x:.2f}" for x in note["load_average_at_start"])
    (RESULTS / "overhead.md").write_text(f"""# Framework overhead: each backend against a bare reference server

{table(results)}

Ratios are framework / reference: the median of per-pair ratios for throughput (higher is better,
goal >= 0.95x), medians of the per-connection memory growth for idle connections (lower is better,
goal <= 1.2x; RSS, or PSS over the server and its children for `fork`).

- Command: `{command}`
- Date: {started.isoformat(timespec="seconds")}
- Settings: {args.rounds} paired rounds of {args.seconds:g} s per workload (A/B, then B/A), closed loop, one
  message in flight per connection; {args.idle} idle connections ({args.idle_fork} for `fork`),
  {args.memory_rounds} memory rounds on fresh servers.
- Machine: {note["cpus"]} cores ({note["cpu_model"] or "unknown CPU"}), Linux {note["kernel"]}, Python {note["python"]},
  gevent {note.get("gevent", "-")}, uvloop {note.get("uvloop", "-")}; servers pinned to CPU {SERVER_CPU}, the C
  client to CPU {CLIENT_CPU}. A shared machine (load average {load} at the start): absolute figures drift
  between runs, the paired ratios are what to read.
""")


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all six)")
    parser.add_argument("--rounds", type=int, default=4, help="paired throughput rounds per workload")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one throughput run")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections for the memory figure")
    parser.add_argument("--idle-fork", type=int, default=200, help="idle connections for fork")
    parser.add_argument("--memory-rounds", type=int, default=2, help="memory measurements per server")
    parser.add_argument("--framework-path", metavar="DIR",
                        help="directory holding another copy of the echoserver package to measure")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python", "bench/overhead.py", *(sys.argv[1:] if argv is None else argv)])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that every server is stopped on the way out
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("needs two cores: one for the servers, one for the client")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    build_client()
    started, note = datetime.datetime.now().astimezone(), machine_note()
    os.sched_setaffinity(0, {CLIENT_CPU})
    results = {}
    with Servers(args.framework_path) as servers:
        for backend in args.backends:
            print(f"{backend}: framework vs reference", flush=True)
            results[backend] = compare(backend, args, servers)
    print()
    print(table(results))
    if not args.no_write:
        write_results(results, args, command, started, note)
        print(f"\nwritten: {RESULTS / 'overhead.md'}, {RESULTS / 'overhead.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
