"""Run a :class:`~echoclients.load.spec.LoadSpec`: threads in processes, a shared window, one result.

Connections are shared out over ``--processes`` (forked, so that one
interpreter's GIL is not what gets measured) and, inside each, over worker
threads. All workers connect first, meet at a barrier, then run the same
warmup and window. Each process reports a raw partial result; the parent adds
them up with :func:`echoclients.load.results.merge`, the same function that
``echo-load merge`` uses for results from several machines.
"""

from __future__ import annotations

import gc
import multiprocessing
import resource
import threading
import time
from collections.abc import Callable

from echoclients.load import hotloop
from echoclients.load.classic import BlockingWorker
from echoclients.load.closedloop import ClosedLoopWorker
from echoclients.load.opening import Opening
from echoclients.load.openloop import OpenLoopWorker
from echoclients.load.payload import PayloadPool
from echoclients.load.results import encode, merge, new_histogram
from echoclients.load.sampling import CpuProbe, judge_bottleneck
from echoclients.load.spec import LoadSpec, SpecError, split

BARRIER_SLACK_S = 5.0
FD_SPARE = 64  # descriptors besides the connections: epoll sets, pipes, the payload, stdio


def run(spec: LoadSpec, on_progress: Callable[[list, list], None] | None = None) -> dict:
    """Run the load and return the finished result dict (see docs/load.md for its fields)."""
    address = spec.resolve()
    sources = spec.sources(*address)
    raise_fd_limit(descriptors_needed(spec))
    threads = split(spec.thread_count, spec.processes)
    timeline = Timeline()
    if spec.processes == 1:
        progress, errors = [0] * threads[0], [0] * threads[0]
        reporter = _start_reporter(on_progress, progress, errors, timeline)
        barrier = threading.Barrier(threads[0])
        parts = [run_process(spec, 0, threads, address, barrier, progress, errors, sources)]
    else:
        parts, reporter = _run_forked(spec, threads, address, on_progress, timeline, sources)
    reporter.set()
    result = merge(parts)
    result["server"] = server = parts[0].get("server")  # sampled by the first process only: merge() would drop it
    if server and server.get("pss_mb_before") is not None:
        # Sampled before the first connect, once every connection was open (before any message), and at the
        # window's end: what holding the connections costs, and what the traffic then added to that.
        held, after = server.get("pss_mb_connected"), server.get("pss_mb")
        for key, mib in (
            ("bytes_per_connection", held if held is not None else after),
            ("bytes_per_connection_after_run", after),
        ):
            if mib is not None:
                server[key] = round((mib - server["pss_mb_before"]) * 2**20 / spec.clients)
    result["processes"] = spec.processes
    result["parts"] = 1
    result["timeline"] = timeline.as_dict()
    judge_bottleneck(result)
    return result


def run_process(
    spec: LoadSpec,
    index: int,
    threads: list[int],
    address: tuple,
    barrier,
    progress,
    errors,
    sources: list[str] | None = None,
) -> dict:
    """This process's share of the run: its clients over its threads; a raw partial result."""
    client_counts = split(spec.clients, spec.processes)
    first_client = sum(client_counts[:index])
    first_slot = sum(threads[:index])
    pool = PayloadPool(spec.size, spec.payload, spec.expect, spec.seed)
    probe = CpuProbe(spec.server_pid if index == 0 else 0)
    timeout = connect_seconds(spec) + BARRIER_SLACK_S
    schedule = _Schedule(barrier, timeout)
    worker_class = BlockingWorker if spec.engine == "blocking" else OpenLoopWorker if spec.rate else ClosedLoopWorker
    opening = Opening.from_spec(spec)
    workers, start = [], first_client
    shares = split(spec.requests, sum(threads))  # --requests, exactly, over every worker of the run
    for n, clients in enumerate(split(client_counts[index], threads[index])):
        streams = [(i, pool.stream(i)) for i in range(start, start + clients)]
        start += clients
        workers.append(
            worker_class(
                spec,
                streams,
                address,
                schedule,
                progress,
                first_slot + n,
                requests=shares[first_slot + n],
                rate=spec.rate * clients / spec.clients,
                probe=probe.mark if n == 0 else None,
                opening=opening,
                sources=sources,
            )
        )
    runners = [
        threading.Thread(target=_guard(worker, errors, first_slot + n), name=f"echo-load-{first_slot + n}", daemon=True)
        for n, worker in enumerate(workers)
    ]
    # The hot path allocates tuples (epoll events) but makes no reference cycles:
    # the cyclic collector would only add pauses to the latencies it measures.
    gc.disable()
    try:
        for thread in runners:
            thread.start()
        for thread in runners:
            thread.join()
    finally:
        gc.enable()
    return _partial(spec, workers, probe)


class _Schedule:
    """The barrier every worker passes twice: once connected, and once its window has closed.

    The second meeting keeps each worker's connections open until every
    window is over: a worker that hung up early would free server slots (say,
    under ``--max-connections``) for connections still being measured. A
    broken barrier does not hang the run: a worker that fails aborts it, and
    the others go on unsynchronised.
    """

    def __init__(self, barrier, timeout: float) -> None:
        self.barrier, self.timeout = barrier, timeout

    def wait(self) -> None:
        try:
            self.barrier.wait(self.timeout)
        except threading.BrokenBarrierError:
            pass

    def abort(self) -> None:
        self.barrier.abort()


def _guard(worker, errors, slot: int) -> Callable[[], None]:
    def target() -> None:
        try:
            worker.run()
        except Exception as exc:  # a bug in a worker must not hide the others' results
            worker.errors[f"internal:{type(exc).__name__}"] += 1
        errors[slot] = sum(worker.errors.values()) + worker.mismatches

    return target


def _partial(spec: LoadSpec, workers: list, probe: CpuProbe) -> dict:
    latency, connect, lateness = new_histogram(), new_histogram(), new_histogram()
    errors: dict[str, int] = {}
    for worker in workers:
        latency.add(worker.latency.histogram)
        connect.add(worker.connect_latency.histogram)
        if getattr(worker, "lateness", None) is not None:
            lateness.add(worker.lateness.histogram)
        for kind, count in worker.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    windows = [w.window for w in workers if len(w.window) == 2]
    duration_ns = max(end for _, end in windows) - min(start for start, _ in windows) if windows else 0
    to_wall = (time.time_ns() - time.monotonic_ns()) / 1e9  # windows on the wall clock: comparable across machines
    window_wall = (
        [
            round(min(start for start, _ in windows) / 1e9 + to_wall, 3),
            round(max(end for _, end in windows) / 1e9 + to_wall, 3),
        ]
        if windows
        else None
    )
    messages = sum(worker.window_messages for worker in workers)
    late = {"lateness_histogram": encode(lateness)} if spec.rate else {}
    return {
        "schema": "echo-load/1",
        "backend": spec.backend or None,
        "target": spec.target,
        "engine": spec.engine,
        "hot_loop": hotloop.chosen(spec) if spec.engine == "epoll" else None,
        "clients": sum(len(worker.per_connection()) for worker in workers),
        "processes": 1,
        "threads": len(workers),
        "size": spec.size,
        "payload": spec.payload,
        "expect": spec.expect,
        "pipeline": spec.pipeline,
        "rate": spec.rate or None,
        "tls": spec.tls,
        "send_proxy": spec.send_proxy or None,
        "warmup_s": spec.warmup_seconds,
        "duration_s": round(duration_ns / 1e9, 6),
        "window_wall": window_wall,
        "messages": messages,
        "bytes": messages * spec.size,
        "errors": errors,
        "mismatches": sum(worker.mismatches for worker in workers),
        "reconnects": sum(getattr(worker, "reconnects", 0) for worker in workers),
        "per_connection": [count for worker in workers for count in worker.per_connection()],
        "histogram": encode(latency),
        "connect_histogram": encode(connect),
        "cpu": probe.client_summary(),
        "server": probe.server_summary(),
    } | late


class Timeline:
    """Replies per second over the whole run (connects and warmup included), from the progress counters.

    Each worker's counter restarts from 0 when its window opens; a second in
    which the sum went down is counted from that restart on, so the second
    the window opens in is slightly undercounted. Good for a time series
    (is the rate steady? when did it stall?), not for the headline rate,
    which comes from the window itself.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.started_wall = time.time()  # where the window (``window_wall``) falls on this timeline
        self.last_total, self.last_at = 0, self.started
        self.rates: list[float] = []

    def sample(self, total: int, final: bool = False) -> None:
        now = time.monotonic()
        if final and now - self.last_at < 0.25:  # too short a tail to say anything
            return
        done = total - self.last_total if total >= self.last_total else total
        if now > self.last_at:
            self.rates.append(round(done / (now - self.last_at), 1))
        self.last_total, self.last_at = total, now

    def as_dict(self) -> dict:
        return {"interval_s": 1.0, "msgs_per_s": self.rates, "started_wall": round(self.started_wall, 3)}


def _start_reporter(on_progress, progress, errors, timeline: Timeline) -> _Stopper:
    """Every half second the progress line (if any), every second a timeline sample."""
    done = threading.Event()

    def report() -> None:
        ticks = 0
        while not done.wait(0.5):
            ticks += 1
            if ticks % 2 == 0:
                timeline.sample(sum(progress))
            if on_progress is not None:
                on_progress(list(progress), list(errors))
        timeline.sample(sum(progress), final=True)

    thread = threading.Thread(target=report, name="echo-load-progress", daemon=True)
    thread.start()
    return _Stopper(done, thread)


class _Stopper:
    """Stops the reporter and waits for its last timeline sample."""

    def __init__(self, done: threading.Event, thread: threading.Thread) -> None:
        self.done, self.thread = done, thread

    def set(self) -> None:
        self.done.set()
        self.thread.join(5)


def _run_forked(
    spec: LoadSpec, threads: list[int], address: tuple, on_progress, timeline: Timeline, sources: list[str] | None
) -> tuple[list, _Stopper]:
    """One forked child per process; each sends its raw partial result back through a pipe."""
    context = multiprocessing.get_context("fork")
    progress = context.Array("q", sum(threads), lock=False)
    errors = context.Array("q", sum(threads), lock=False)
    barrier = context.Barrier(sum(threads))
    children = []
    for index in range(spec.processes):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(
            target=_child,
            args=(spec, index, threads, address, barrier, progress, errors, sources, sender),
            name=f"echo-load-{index}",
            daemon=True,
        )
        child.start()
        sender.close()
        children.append((child, receiver))
    reporter = _start_reporter(on_progress, progress, errors, timeline)
    deadline = (
        time.monotonic()
        + connect_seconds(spec)
        + BARRIER_SLACK_S
        + spec.warmup_seconds
        + spec.run_seconds
        + spec.timeout
        + 30
    )
    parts = []
    for index, (child, receiver) in enumerate(children):
        if receiver.poll(max(0.0, deadline - time.monotonic())):
            try:
                parts.append(receiver.recv())
            except EOFError:
                parts.append(_lost(spec, index))
        else:
            parts.append(_lost(spec, index))
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
    return parts, reporter


def _child(spec, index, threads, address, barrier, progress, errors, sources, sender) -> None:
    sender.send(run_process(spec, index, threads, address, barrier, progress, errors, sources))
    sender.close()


def _lost(spec: LoadSpec, index: int) -> dict:
    """What a child that died or hung contributes: its clients, and an error that says so."""
    empty = encode(new_histogram())
    return {
        "schema": "echo-load/1",
        "clients": split(spec.clients, spec.processes)[index],
        "processes": 1,
        "threads": 0,
        "size": spec.size,
        "duration_s": 0.0,
        "messages": 0,
        "bytes": 0,
        "errors": {"worker_lost": 1},
        "mismatches": 0,
        "per_connection": [],
        "histogram": empty,
        "connect_histogram": empty,
        "cpu": {},
        "server": None,
    }


def connect_seconds(spec: LoadSpec) -> float:
    """The longest connecting may take: the paced opening of every connection, then the last one's timeout."""
    return (spec.clients / spec.connect_rate if spec.connect_rate else 0.0) + spec.connect_timeout


def descriptors_needed(spec: LoadSpec) -> int:
    """Descriptors the busiest process needs: a socket per connection, and a few to spare."""
    return max(split(spec.clients, spec.processes)) + FD_SPARE


def check_descriptor_limit(spec: LoadSpec) -> None:
    """A usage error, before any connect, when one process could not hold its share of the connections."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or descriptors_needed(spec) <= hard:
        return
    processes = -(-spec.clients // (hard - FD_SPARE))
    raise SpecError(
        "processes",
        f"{spec.clients:,} connections over {spec.processes} process(es) need "
        f"{descriptors_needed(spec):,} descriptors in one process, and this machine allows "
        f"{hard:,}: use --processes {processes} or more",
    )


def raise_fd_limit(wanted: int) -> None:
    """Lift the soft open-file limit toward the hard one: 1,000 clients need 1,000 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, wanted))
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
