"""``fork``: a process per connection, the classic ``socketserver.ForkingMixIn`` shape, forked from a fork server.

Each client is served by its own process, with its own interpreter and GIL, so
CPU-bound handlers run truly in parallel. This process accepts; a small fork
server it starts (:mod:`echoserver.backends.forkserver`) forks the connection
processes, from a heap that holds only the connection loop, so each costs less
memory than a fork of this one would (docs/fork-server.md has the numbers).

This process still owns everything else: ``--max-children`` and
``--max-connections`` (it stops accepting while that many connections are
alive), the drain on SIGTERM (SIGTERM to every connection process, SIGKILL to
what is left after ``--grace``), the counters and the logs (both relayed from
the children). The fork server reaps its children and reports each exit; if it
dies, this process logs it, adopts its children (a child subreaper), reaps
them itself and starts a new fork server after a back-off, while the
connections already served go on undisturbed.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time

from echoserver.backends.blocking import BlockingBackend
from echoserver.backends.forkclient import ForkServerClient, ForkServerGone
from echoserver.backends.stream import BlockingConnection
from echoserver.observability.stats import add
from echoserver.processes.children import RestartBackoff, become_subreaper, describe_exit, signal_all

log = logging.getLogger("echoserver")


class ForkPerConnectionBackend(BlockingBackend):
    name = "fork"
    poll_interval = 1.0  # look after adopted children even where no SIGCHLD handler can be installed

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.max_children
        self.limit = min(limit, self.config.max_connections or limit)
        self.rows: dict[int, int] = {}  # row -> PID of the connection process using it (0: not forked yet)
        self.adopted: set[int] = set()  # rows whose process outlived its fork server: ours to reap now
        self._free_rows = list(range(self.limit))
        self.forkserver: ForkServerClient | None = None
        self.backoff = RestartBackoff()
        self._lock = threading.Lock()  # rows and totals change together (snapshot may run on another thread)
        self.restart_at: float | None = None

    @property
    def active(self) -> int:
        return len(self.rows)

    def has_capacity(self) -> bool:
        return self.forkserver is not None and self.forkserver.alive and len(self.rows) < self.limit

    def snapshot(self) -> dict:
        if self.forkserver is None:
            return super().snapshot()
        self.forkserver.collect([row for row, pid in list(self.rows.items()) if pid], self._signal_children)
        with self._lock:
            totals = super().snapshot()
            add(totals, self.forkserver.table.total(list(self.rows)))
            totals["active"] = len(self.rows)
        return totals

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        signal.signal(signal.SIGCHLD, lambda signum, frame: self.wake())  # adopted children, the fork server

    # -- running --------------------------------------------------------------------

    def run(self, listeners, ready, *, handle_signals: bool = False) -> None:
        self.forkserver = ForkServerClient(self.config, self.limit)
        was_subreaper = become_subreaper(True)
        try:
            self.forkserver.start()
            super().run(listeners, ready, handle_signals=handle_signals)
        finally:
            self.forkserver.close()
            if not was_subreaper:
                become_subreaper(False)

    def dispatch(self, connection: BlockingConnection) -> None:
        self.state.closed(connection)  # a connection process serves it; this one counts rows
        row = self._free_rows.pop()
        self.stats.count("accepted")
        self.rows[row] = 0
        try:
            self.forkserver.send(connection.sock, row)
        except ForkServerGone:
            self._retire(row)  # the client sees its connection closed; the fork server's death is handled next
        connection.sock.close()

    def wait_readable(self, socks: list, timeout: float | None) -> list:
        if self.restart_at is not None:
            timeout = max(0.0, min(timeout if timeout is not None else 1.0, self.restart_at - time.monotonic()))
        news = self.forkserver.watch()
        readable = select.select([*socks, *news], [], [], timeout)[0]
        if self.forkserver.log_r in readable:
            self.forkserver.relay_logs()
        if self.forkserver.ctl is not None and self.forkserver.ctl in readable:
            self._handle_events()
        return [sock for sock in readable if sock in socks]

    def on_wake(self) -> None:
        self._reap_adopted()
        if self.restart_at is not None and time.monotonic() >= self.restart_at and not self.stopping:
            self.restart_at = None
            try:
                self.forkserver.start()
                log.info("fork server restarted (pid %d)", self.forkserver.pid)
            except (ForkServerGone, OSError) as exc:
                self._schedule_restart(f"could not be restarted ({exc})", 0.0)

    # -- what the fork server tells us ------------------------------------------------

    def _handle_events(self) -> None:
        for kind, row, pid, status in self.forkserver.events():
            if kind == b"F" and row in self.rows:
                # Nothing more to do during a drain. The fork server reads our messages in order and
                # no socket is handed over once the drain has begun, so this process was already its
                # child when the drain's one signal to every child came. A SIGTERM of its own would
                # be a second one, which tells a connection process to cut its client off.
                self.rows[row] = pid
            elif kind == b"X" and row in self.rows:
                self._retire(row)
            elif kind == b"D":
                self._fork_server_died(pid, status)

    def _fork_server_died(self, pid: int, status: int) -> None:
        for row, child in list(self.rows.items()):
            if child:
                self.adopted.add(row)  # re-parented to us: still serving, reaped by _reap_adopted
            else:
                self._retire(row)  # its socket died with the fork server, before any child had it
        lived = time.monotonic() - self.forkserver.started
        if self.stopping:
            log.warning("fork server %d %s while draining", pid, describe_exit(status))
            return
        self._schedule_restart(f"{describe_exit(status)} after {lived:.1f}s", lived, pid)

    def _schedule_restart(self, how: str, lived: float, pid: int = 0) -> None:
        delay = self.backoff.after_death(lived)
        self.restart_at = time.monotonic() + delay
        log.error(
            "fork server%s %s; %d connection process(es) go on; restarting it in %.1fs",
            f" {pid}" if pid else "",
            how,
            len(self.adopted),
            delay,
        )

    def _reap_adopted(self) -> None:
        for row in list(self.adopted):
            pid = self.rows[row]
            with self._lock:  # reaped and forgotten together: _signal_children never sees a reaped PID
                try:
                    done = os.waitpid(pid, os.WNOHANG)[0]
                except ChildProcessError:  # not re-parented yet, or reaped by the fork server as it died
                    try:
                        os.kill(pid, 0)
                        continue
                    except ProcessLookupError:
                        done = pid
                if done:
                    self.adopted.discard(row)
            if done:
                self._retire(row)

    def _retire(self, row: int) -> None:
        with self._lock:
            self.stats.absorb(self.forkserver.table.take(row))
            self.stats.count("closed")
            del self.rows[row]
            self._free_rows.append(row)

    # -- graceful shutdown ------------------------------------------------------------

    def drain(self) -> None:
        deadline = time.monotonic() + self.config.grace
        self._signal_children(signal.SIGTERM)
        self.wait_until_idle(deadline)
        if self.rows:
            log.warning("grace period over: killing %d connection process(es)", len(self.rows))
            self._signal_children(signal.SIGKILL)
            self.wait_until_idle(time.monotonic() + 5.0, forced=True)
        self.forkserver.stop()

    def wait_until_idle(self, deadline: float, forced: bool = False) -> None:
        while self.rows and time.monotonic() < deadline and (forced or not self.forcing):
            self.wait_readable([], 0.05)
            self.on_wake()

    def _signal_children(self, signum: int) -> None:
        """Every connection process: the fork server's children through it, in one message (it alone knows
        which PIDs are still theirs); those adopted since a fork server died are ours, and we signal them."""
        with self._lock:  # snapshot() calls this from another thread than the one reaping them
            signal_all([pid for pid in (self.rows.get(row) for row in self.adopted) if pid], signum)
        self.forkserver.signal(0, signum)
