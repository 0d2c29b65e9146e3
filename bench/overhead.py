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
from bench.cclient import CLIENT_BINARY, build_client  # noqa: E402
from echoserver.spawn import ServerProcess  # noqa: E402

RESULTS = BENCH / "results"
BACKENDS = ("thread", "threadpool", "fork", "gevent", "asyncio", "uvloop")
# A second reference, measured in its own paired rounds: for fork, what a user would pick instead of
# a hand-written loop (the standard library's socketserver.ForkingTCPServer).
SECOND_REFERENCES = {"fork": "socketserver_fork"}
WORKLOADS = {"20x64B": (20, 64), "200x1KiB": (200, 1024)}
THROUGHPUT_GOAL, MEMORY_GOAL = 0.95, 1.2
SERVER_CPU, CLIENT_CPU = 0, 1
POOL_SIZE = 64  # threadpool: connections beyond the pool are accepted but never read while idle


# -- the client ------------------------------------------------------------------------------


def run_client(port: int, connections: int, size: int, seconds: float, attempts: int = 3) -> dict:
    """The client's JSON result; fails loudly on any error or corrupted byte.

    A run in which no round trip completed (the server got no CPU at all on a
    loaded machine) is not a measurement: it is repeated, a few times at most.
    """
    for _ in range(attempts):
        done = subprocess.run(
            [str(CLIENT_BINARY), "127.0.0.1", str(port), str(connections), str(size), str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        result = json.loads(done.stdout) if done.stdout.strip() else {}
        if done.returncode != 0:
            raise RuntimeError(f"epoll-client failed ({done.returncode}): {done.stdout.strip()} {done.stderr.strip()}")
        if result.get("messages"):
            return result
    raise RuntimeError(f"no round trip completed in {attempts} runs of {seconds}s on port {port}")


def cpu_seconds(pid: int) -> float:
    """CPU time of a server so far: all its threads, its reaped children and its live ones.

    A live descendant's reaped children count too (the fork backend's connection
    processes are reaped by its fork server, which is still running).
    """
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:4])  # user, system, children_user, children_system
    for child in _children(pid):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:4])
    return total


def measure(server, connections: int, size: int, seconds: float) -> tuple[float, float, float]:
    """(round trips per second, server CPU microseconds per round trip, server busy fraction) for one run.

    CPU per round trip is the cross-check that survives a shared machine: when
    another process takes the core, throughput drops but the server's own work
    per message does not.
    """
    before = cpu_seconds(server.pid)
    result = run_client(server.port, connections, size, seconds)
    # A forking server's children exit after the client leaves; their time counts once reaped
    # (socketserver reaps on its next poll, up to half a second later).
    with contextlib.suppress(RuntimeError):
        wait_until(lambda: not connection_children(server.pid), 5, "connection processes to exit")
    spent = cpu_seconds(server.pid) - before
    if spent <= 0:
        raise RuntimeError("the server got no measurable CPU time in the run")
    return result["msgs_per_s"], spent / result["messages"] * 1e6, spent / result["seconds"]


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


@contextlib.contextmanager
def in_directory(path: str | None):
    before = os.getcwd()
    if path:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class ReferenceServer:
    """``bench/reference/NAME_server.py PORT``, ready when it prints ``listening on 127.0.0.1:PORT``."""

    def __init__(self, backend: str) -> None:
        self.args = [sys.executable, str(BENCH / "reference" / f"{backend}_server.py"), "0"]
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> ReferenceServer:
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
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

    def start(self, backend: str, kind: str, reference: str | None = None):
        if kind == "framework":
            server = ServerProcess("--backend", backend, env=self.env)
        else:
            server = ReferenceServer(reference or backend)
        # ``python -m`` puts the working directory first on sys.path: start from the copy to measure.
        with on_cpu(SERVER_CPU), in_directory(self.env["PYTHONPATH"] if self.env else None):
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

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in list(self.started):
            self.stop(server)


def _children(pid: int) -> list:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


FORK_SERVER_NAME = "echo-forkserver"  # the fork backend's fork server: a helper, not a connection's process


def connection_children(pid: int) -> list:
    """The descendants that serve connections, or did (a zombie's CPU time counts once it is reaped):
    all of them, less the fork backend's fork server."""
    found = []
    for child in _children(pid):
        with contextlib.suppress(psutil.Error):
            if child.name() != FORK_SERVER_NAME:
                found.append(child)
    return found


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
        wait_until(lambda: not connection_children(server.pid), 10, "warm-up children to exit")
    time.sleep(0.3)
    fds, before = proc.num_fds(), memory(server.pid, forking)
    socks = open_idle(server.port, count, min(count, POOL_SIZE) if backend == "threadpool" else count)
    try:
        if forking:
            wait_until(lambda: len(connection_children(server.pid)) >= count, 20, f"{count} children")
        else:
            wait_until(lambda: proc.num_fds() >= fds + count, 20, f"{count} accepted connections")
        time.sleep(0.3)
        return (memory(server.pid, forking) - before) / count
    finally:
        for sock in socks:
            sock.close()


def summarize(fw: list[tuple], ref: list[tuple]) -> dict:
    """Per-pair ratios, framework / reference. ``cpu_ratio`` is reference CPU over framework CPU
    per round trip: the throughput ratio the two would have on a core of their own."""
    ratios = [a[0] / b[0] for a, b in zip(fw, ref)]
    cpu_ratios = [b[1] / a[1] for a, b in zip(fw, ref)]
    return {
        "framework_msgs_per_s": [a[0] for a in fw],
        "reference_msgs_per_s": [b[0] for b in ref],
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "framework_cpu_us": [a[1] for a in fw],
        "reference_cpu_us": [b[1] for b in ref],
        "cpu_ratios": cpu_ratios,
        "cpu_ratio": statistics.median(cpu_ratios),
        "framework_busy": [a[2] for a in fw],
        "reference_busy": [b[2] for b in ref],
    }


# -- one backend against its reference ------------------------------------------------------


def compare(backend: str, args, servers: Servers, reference: str | None = None) -> dict:
    result = {"throughput": {}, "memory": {}}
    if args.only != "throughput":
        result["memory"] = compare_memory(backend, args, servers, reference)
    if args.only != "memory":
        result["throughput"] = compare_throughput(backend, args, servers, reference)
    return result


def compare_memory(backend: str, args, servers: Servers, reference: str | None = None) -> dict:
    idle = args.idle_fork if backend == "fork" else args.idle
    fw_mem, ref_mem = [], []
    for round_ in range(args.memory_rounds):  # fresh servers each time: growth from a clean start
        for kind in ("framework", "reference") if round_ % 2 == 0 else ("reference", "framework"):
            server = servers.start(backend, kind, reference)
            try:
                value = idle_bytes_per_connection(server, backend, idle)
            finally:
                servers.stop(server)
            (fw_mem if kind == "framework" else ref_mem).append(value)
    memory = {
        "connections": idle,
        "framework_bytes": fw_mem,
        "reference_bytes": ref_mem,
        "ratio": statistics.median(fw_mem) / statistics.median(ref_mem),
    }
    print(
        f"  {backend:<10} idle memory: {statistics.median(fw_mem) / 1024:7.1f} KiB vs "
        f"{statistics.median(ref_mem) / 1024:7.1f} KiB per connection -> {memory['ratio']:.2f}x",
        flush=True,
    )
    return memory


def compare_throughput(backend: str, args, servers: Servers, reference_name: str | None = None) -> dict:
    result = {}
    framework = servers.start(backend, "framework")
    reference = servers.start(backend, "reference", reference_name)
    try:
        for name, (connections, size) in WORKLOADS.items():
            run = lambda server, seconds: measure(server, connections, size, seconds)  # noqa: E731
            if not result:  # each server's very first client session, measured apart from the warm ones
                result["first_session"] = first_session(
                    backend, run(framework, args.seconds), run(reference, args.seconds), name
                )
            run(framework, 0.5), run(reference, 0.5)  # warm-up, not counted
            fw, ref, failed = [], [], 0
            for round_ in range(args.rounds):  # A/B, then B/A: a drift within the pair cancels out
                order = (framework, reference) if round_ % 2 == 0 else (reference, framework)
                try:
                    pair = {id(server): run(server, args.seconds) for server in order}
                except RuntimeError as exc:  # a starved run: drop the pair, say so, go on
                    failed += 1
                    print(f"  {backend:<10} {name:<9} pair {round_ + 1} dropped: {exc}", flush=True)
                    continue
                fw.append(pair[id(framework)]), ref.append(pair[id(reference)])
            if not fw:
                result[name] = {"ratio": 0.0, "cpu_ratio": 0.0, "failed_pairs": failed, "no_data": True}
                continue
            t = result[name] = summarize(fw, ref) | {"failed_pairs": failed}
            print(
                f"  {backend:<10} {name:<9} {statistics.median(t['framework_msgs_per_s']):9.0f} vs "
                f"{statistics.median(t['reference_msgs_per_s']):9.0f} msg/s -> {t['ratio']:.3f}x "
                f"(pairs: {', '.join(f'{r:.2f}' for r in t['ratios'])}); CPU per round trip "
                f"{statistics.median(t['framework_cpu_us']):.1f} vs {statistics.median(t['reference_cpu_us']):.1f} us "
                f"-> {t['cpu_ratio']:.3f}x; server busy {statistics.median(t['framework_busy']):.0%} / "
                f"{statistics.median(t['reference_busy']):.0%}",
                flush=True,
            )
    finally:
        servers.stop(framework)
        servers.stop(reference)
    return result


def first_session(backend: str, framework: tuple, reference: tuple, workload: str) -> dict:
    """A fresh server's first session: a cost that only lasts until the first client leaves still shows.

    (A fresh asyncio server once spent 4x the CPU per message until then: glibc's
    mmap threshold sat under its 256 KiB reads.)
    """
    fresh = {
        "workload": workload,
        "framework_cpu_us": framework[1],
        "reference_cpu_us": reference[1],
        "cpu_ratio": reference[1] / framework[1],
    }
    print(
        f"  {backend:<10} first session of a fresh server ({workload}): CPU per round trip "
        f"{framework[1]:.1f} vs {reference[1]:.1f} us -> {fresh['cpu_ratio']:.3f}x",
        flush=True,
    )
    return fresh


# -- report ----------------------------------------------------------------------------------


def throughput_verdict(t: dict) -> str:
    wall, cpu = t["ratio"] >= THROUGHPUT_GOAL, t["cpu_ratio"] >= THROUGHPUT_GOAL
    return "meets" if wall and cpu else "misses" if not (wall or cpu) else "unclear: wall and CPU disagree"


def table(results: dict) -> str:
    """Markdown: one throughput row per backend and workload, then one memory row per backend."""
    rows = [
        "| backend | workload | round trips/s, framework / reference | ratio (wall) | "
        "server CPU us per round trip | ratio (CPU) | server busy | >= 0.95x |",
        "|---" * 8 + "|",
    ]
    for backend, r in results.items():
        for name, t in r["throughput"].items():
            med = statistics.median
            if name == "first_session":
                continue
            if t.get("no_data"):
                rows.append(
                    f"| `{backend}` | {name} | no pair completed ({t['failed_pairs']} dropped) "
                    "| - | - | - | - | no data |"
                )
                continue
            dropped = f" ({t['failed_pairs']} pairs dropped)" if t["failed_pairs"] else ""
            rows.append(
                f"| `{backend}` | {name} | {med(t['framework_msgs_per_s']):,.0f} / "
                f"{med(t['reference_msgs_per_s']):,.0f} | **{t['ratio']:.3f}x** | "
                f"{med(t['framework_cpu_us']):.2f} / {med(t['reference_cpu_us']):.2f} | "
                f"**{t['cpu_ratio']:.3f}x** | {med(t['framework_busy']):.0%} / {med(t['reference_busy']):.0%} | "
                f"{throughput_verdict(t)}{dropped} |"
            )
    rows += [
        "",
        "| backend | first session of a fresh server | server CPU us per round trip, framework / reference "
        "| ratio (CPU) | warm ratio (CPU) |",
        "|---" * 5 + "|",
    ]
    for backend, r in results.items():
        fresh = r["throughput"].get("first_session")
        if fresh:
            warm = r["throughput"].get(fresh["workload"], {}).get("cpu_ratio", 0.0)
            rows.append(
                f"| `{backend}` | {fresh['workload']} | {fresh['framework_cpu_us']:.2f} / "
                f"{fresh['reference_cpu_us']:.2f} | **{fresh['cpu_ratio']:.3f}x** | {warm:.3f}x |"
            )
    rows += [
        "",
        "| backend | idle connections | KiB per idle connection, framework / reference | ratio | <= 1.2x |",
        "|---" * 5 + "|",
    ]
    for backend, r in results.items():
        m = r["memory"]
        if m:
            rows.append(
                f"| `{backend}` | {m['connections']} | {statistics.median(m['framework_bytes']) / 1024:.1f} / "
                f"{statistics.median(m['reference_bytes']) / 1024:.1f} | **{m['ratio']:.2f}x** | "
                f"{'meets' if m['ratio'] <= MEMORY_GOAL else 'misses'} |"
            )
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
    git = subprocess.run(
        ["git", "-C", str(BENCH.parent), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "framework_commit": git or "unknown",
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
        "load_average_at_start": os.getloadavg(),
    }


def write_results(results: dict, args, command: str, started: datetime.datetime, note: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("no_write", "name")}
    command += "" if not args.framework_path else "  # (framework from --framework-path)"
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps(
            {
                "date": started.isoformat(timespec="seconds"),
                "command": command,
                "settings": settings,
                "machine": note,
                "goals": {"throughput_ratio_min": THROUGHPUT_GOAL, "memory_ratio_max": MEMORY_GOAL},
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    load = ", ".join(f"{x:.2f}" for x in note["load_average_at_start"])
    (RESULTS / f"{args.name}.md").write_text(f"""# Framework overhead: each backend against a bare reference server

{table(results)}

Throughput (higher is better, goal >= 0.95x): *ratio (wall)* is the median of the per-pair ratios of
round trips per second, framework / reference; *ratio (CPU)* is the median of per-pair reference /
framework server CPU time per round trip, the throughput ratio the two would have with a core to
themselves. *Server busy* is the server's CPU time over wall time: well under 100% means that other
work on the shared machine, not the server, set the pace, and then the CPU ratio is the one to trust.
Memory (lower is better, goal <= 1.2x): the server's growth with N idle connections (each did one
round trip) divided by N; RSS, or for `fork` PSS summed over the server and its children.

- Command: `{command}`
- Date: {started.isoformat(timespec="seconds")}; framework at `{note["framework_commit"]}`
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
    parser.add_argument("--rounds", type=int, default=8, help="paired throughput rounds per workload")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one throughput run")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections for the memory figure")
    parser.add_argument("--idle-fork", type=int, default=200, help="idle connections for fork")
    parser.add_argument("--memory-rounds", type=int, default=2, help="memory measurements per server")
    parser.add_argument("--only", choices=("throughput", "memory"), help="measure just one of the two")
    parser.add_argument(
        "--framework-path", metavar="DIR", help="directory holding another copy of the echoserver package to measure"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    parser.add_argument(
        "--name", default="overhead", help="write bench/results/NAME.md and NAME.json (e.g. overhead_fork)"
    )
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
            if backend in SECOND_REFERENCES:
                second = SECOND_REFERENCES[backend]
                print(f"{backend}: framework vs reference/{second}_server.py", flush=True)
                results[f"{backend} vs {second}"] = compare(backend, args, servers, second)
    print()
    print(table(results))
    if not args.no_write:
        write_results(results, args, command, started, note)
        print(f"\nwritten: {RESULTS / (args.name + '.md')}, {RESULTS / (args.name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
