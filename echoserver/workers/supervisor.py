"""``--workers N``: a supervisor process and N pre-forked workers, each running the chosen backend.

The supervisor owns processes and signals; the workers own connections. It
binds, forks the workers, waits until every one of them reports ready, prints
one ready line, restarts any that dies, and on SIGTERM/SIGINT has them drain.

One shared socket, not SO_REUSEPORT
    The supervisor binds the listening socket once, with the same
    :func:`~echoserver.net.listener.bind_listener` and the same error messages as a
    single server, and each worker inherits it across ``fork()``. So a bind
    error is reported once, before any worker exists, and ``--port 0`` yields
    one real port to announce. Connections waiting in the backlog belong to the
    socket, not to a worker: when a worker dies or drains, the others take
    them, where with ``SO_REUSEPORT`` each worker has its own accept queue and
    what waits in a dead worker's queue is reset. A free worker takes the next
    connection, where ``SO_REUSEPORT`` hashes connections to workers whether or
    not they are busy. The price is that every idle worker wakes for a new
    connection and all but one get ``EAGAIN`` (the backends expect that), and
    the spread over workers is less even than a hash; with about one worker per
    core, both are cheap.

Forked after set-up, never re-executed
    A backend that patches the process (the registry's ``prepare`` hook) has
    done so before anything else was imported, so a worker forked from the
    supervisor already has the patched modules and patches nothing twice. The
    supervisor itself never blocks in a replaced call: it takes ``fork``,
    ``waitpid``, ``select`` and ``signal`` from the backend class's
    :meth:`~echoserver.backends.base.Backend.original`, and each worker starts
    with the class's :meth:`~echoserver.backends.base.Backend.after_fork`.
    Event loops are created by the backend inside the worker; the supervisor
    never makes one. Forking, reaping and restart back-off are
    :mod:`echoserver.processes.children`, shared with the fork backend.

Workers run in their own process group, so a Ctrl-C in a terminal reaches the
supervisor alone and is forwarded once: a worker that saw it twice would take
it as the second, forcing signal. Each worker asks the kernel for SIGTERM if
the supervisor dies, so none outlives a SIGKILLed supervisor.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
from dataclasses import dataclass

from echoserver.backends.base import SHUTDOWN_SIGNALS
from echoserver.config import ServerConfig
from echoserver.net.listener import bind_listeners, close_listeners, format_address
from echoserver.observability.logs import StatsReporter
from echoserver.observability.ready import announce
from echoserver.observability.stats import SlotTable, add, empty
from echoserver.processes.children import RestartBackoff, describe_exit, fork_child, reap, signal_all
from echoserver.workers.worker import HANDLED_SIGNALS, run_worker

log = logging.getLogger("echoserver.supervisor")

KILL_MARGIN = 5.0  # past --grace, the supervisor SIGKILLs a worker that is still draining


class WorkersFailed(RuntimeError):
    """A worker died while draining or before it was ready: the server did not end cleanly."""


def supervise(config: ServerConfig, backend_class: type) -> int:
    """Serve with ``config.workers`` processes until SIGTERM/SIGINT; 0 if every worker drained cleanly.

    ``config`` must have passed :func:`echoserver.server.check` already, so that
    no worker can fail on it. Raises :class:`~echoserver.config.ConfigError`
    (before any worker starts) when the address cannot be bound.
    """
    listeners = bind_listeners(config, config.reuse_port)
    per_slot = [listeners]
    try:
        if config.reuse_port:  # the same addresses (a port 0 now resolved), bound again for every other worker
            same = config.replace(bind=tuple(format_address(sock.getsockname()) for sock in listeners))
            per_slot += [bind_listeners(same, reuse_port=True) for _ in range(1, config.workers)]
        return Supervisor(config, backend_class, listeners, per_slot if config.reuse_port else None).run()
    finally:
        for group in per_slot:
            close_listeners(group)


@dataclass
class Worker:
    slot: int
    pid: int
    ready_fd: int  # read end of the pipe the worker reports readiness on; -1 once read
    started: float
    ready: bool = False


class Supervisor:
    def __init__(
        self, config: ServerConfig, backend_class: type, listeners: list, slot_listeners: list[list] | None = None
    ) -> None:
        self.config = config
        self.backend_class = backend_class
        self.listeners = listeners
        self.slot_listeners = slot_listeners  # --reuse-port: each slot's own sockets (and a respawn's)
        self.workers: dict[int, Worker] = {}  # by PID
        self.backoff = [RestartBackoff() for _ in range(config.workers)]
        original = backend_class.original
        self._fork, self._waitpid = original("os", "fork"), original("os", "waitpid")
        self._select, self._signal = original("select", "select"), original("signal", "signal")
        self._epoll = original("select", "epoll")
        self.restarts: dict[int, float] = {}  # slot -> when to start its next worker
        self.pending_signals: list[int] = []
        self.stopping = False
        self.kill_at: float | None = None
        self.announced = False
        self.clean = True
        # Each worker publishes its counters into its slot's row; a dead worker's
        # last row is folded into ``retired`` so that totals never go backwards.
        self.table = SlotTable(config.workers)
        self.retired = empty()
        self.metrics = self.reporter = None

    def snapshot(self) -> dict:
        """The counters of every worker, past and present."""
        return add(dict(self.retired), self.table.total())

    def _start_reporting(self) -> None:
        """Metrics and the stats line, polled from this loop: the supervisor runs no thread."""
        config = self.config
        if config.metrics_port is not None:
            from echoserver.observability.metrics import MetricsServer

            self.metrics = MetricsServer(
                config.metrics_host,
                config.metrics_port,
                self.snapshot,
                lambda: self.announced and not self.stopping,
                config.backend,
                os.getpid(),
                epoll=self._epoll,
            )
            log.info("metrics on http://%s/metrics", format_address((config.metrics_host, self.metrics.port)))
        if config.stats_interval:
            self.reporter = StatsReporter(self.snapshot, config.stats_interval)

    # -- the loop ---------------------------------------------------------------

    def run(self) -> int:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        previous = {signum: self._signal(signum, self._on_signal) for signum in HANDLED_SIGNALS}
        previous_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            self._start_reporting()
            for slot in range(self.config.workers):
                self._spawn(slot)
            while self.workers or self.restarts:
                self._wait()
                self._handle_signals()
                self._reap()
                self._announce_when_ready()
                self._restart_due()
                self._kill_stragglers()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                self._signal(signum, handler)
            signal_all(self.workers, signal.SIGKILL)  # only after an exception: kill, do not orphan
            for pid in self.workers:
                self._waitpid(pid, 0)
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self.metrics:
                self.metrics.stop()
        return 0 if self.clean else 1

    def _on_signal(self, signum: int, frame: object) -> None:
        self.pending_signals.append(signum)  # the wakeup fd interrupts the select

    def _wait(self) -> None:
        deadlines = [*self.restarts.values(), *([self.kill_at] if self.kill_at else [])]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 1.0
        if self.reporter:
            timeout = min(timeout, self.reporter.due_in())
        starting = [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
        metrics = [self.metrics] if self.metrics else []
        readable = self._select([self._wake_r, *starting, *metrics], [], [], min(timeout, 1.0))[0]
        if self.metrics:  # also when nothing is readable: it closes peers past their deadline
            self.metrics.handle_ready()
        if self.reporter:
            self.reporter.tick()
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        for worker in list(self.workers.values()):
            if worker.ready_fd in readable:
                worker.ready = os.read(worker.ready_fd, 1) == b"R"  # b"" if it died first
                os.close(worker.ready_fd)
                worker.ready_fd = -1
                if worker.ready and self.announced:
                    log.info("worker %d ready", worker.pid)

    def _announce_when_ready(self) -> None:
        if (
            not self.announced
            and not self.stopping
            and all(w.ready for w in self.workers.values())
            and len(self.workers) == self.config.workers
        ):
            self.announced = True
            for listener in self.listeners:
                announce(listener.getsockname(), self.config.backend, workers=self.config.workers)

    # -- workers ----------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        ready_r, ready_w = os.pipe()
        # Everything the supervisor holds now is inherited by the worker. Frozen, the worker's
        # collector never writes to those objects' headers, so their pages stay shared instead of
        # being copied the first time a full collection runs: that copy was 0.3 KiB per connection
        # on asyncio and uvloop at 100,000 connections over 8 workers (docs/c100k.md).
        gc.freeze()
        pid = fork_child(
            lambda: self._become_worker(ready_w, slot), fork=self._fork, block=tuple(HANDLED_SIGNALS), what="worker"
        )
        os.close(ready_w)
        self.workers[pid] = Worker(slot, pid, ready_r, time.monotonic())
        log.debug("worker %d started (slot %d)", pid, slot)

    def _become_worker(self, ready_w: int, slot: int) -> int:
        signal.set_wakeup_fd(-1)
        # The supervisor's own descriptors only: not everything but the listeners, because
        # a patched process may hold descriptors of its own event loop.
        inherited = [self._wake_r, self._wake_w, *(w.ready_fd for w in self.workers.values() if w.ready_fd >= 0)]
        if self.metrics:
            inherited.extend(self.metrics.descriptors())
        for fd in inherited:
            os.close(fd)
        os.setpgid(0, 0)
        listeners = self.listeners
        if self.slot_listeners:
            listeners = self.slot_listeners[slot]
            for n, group in enumerate(self.slot_listeners):
                for sock in group if n != slot else ():
                    sock.close()  # another worker's share of the port
        return run_worker(self.config, self.backend_class, listeners, ready_w, os.getppid(), self.table, slot)

    def _reap(self) -> None:
        for pid, status in reap(self.workers, self._waitpid):
            worker = self.workers.pop(pid)
            add(self.retired, {**self.table.take(worker.slot), "active": 0})
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
            self._worker_exited(worker, status)

    def _worker_exited(self, worker: Worker, status: int) -> None:
        how = describe_exit(status)
        if self.stopping:
            if status == 0:
                log.info("worker %d drained and exited", worker.pid)
            else:
                log.warning("worker %d %s while draining", worker.pid, how)
                self.clean = False
            return
        if not worker.ready and not self.announced:
            log.error("worker %d %s before it was ready; stopping", worker.pid, how)
            self.clean = False
            self._begin_stop(signal.SIGTERM, quiet=True)
            return
        lived = time.monotonic() - worker.started
        delay = self.backoff[worker.slot].after_death(lived)
        log.warning("worker %d %s after %.1fs; restarting it in %.1fs", worker.pid, how, lived, delay)
        self.restarts[worker.slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.restarts.items()):
            if when <= now:
                del self.restarts[slot]
                self._spawn(slot)

    # -- shutdown ---------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.pending_signals:
            signum = self.pending_signals.pop(0)
            if signum in SHUTDOWN_SIGNALS:
                self._begin_stop(signum)

    def _begin_stop(self, signum: int, quiet: bool = False) -> None:
        name = signal.Signals(signum).name
        if self.stopping:
            log.info("received %s again: workers close all connections now", name)
        else:
            self.stopping = True
            self.restarts.clear()
            self.kill_at = time.monotonic() + self.config.grace + KILL_MARGIN
            if not quiet:
                log.info("received %s; draining %d worker(s) (up to %gs)", name, len(self.workers), self.config.grace)
        signal_all(self.workers, signum)  # a backend takes a second signal as "force"

    def _kill_stragglers(self) -> None:
        if self.kill_at is not None and self.workers and time.monotonic() >= self.kill_at:
            log.warning("%d worker(s) still running past the grace period: killing", len(self.workers))
            signal_all(self.workers, signal.SIGKILL)
            self.kill_at = None
            self.clean = False
