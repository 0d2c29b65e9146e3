"""``fork``: ``os.fork()`` per connection, the classic ``socketserver.ForkingMixIn`` shape.

Each client is served by its own process, with its own interpreter and GIL, so
CPU-bound handlers run truly in parallel. The parent only accepts, forks and
reaps: a SIGCHLD wakes its accept loop so that every exited child is collected
at once (no zombies), and it stops accepting while ``--max-children`` are alive.
Children ask the kernel to signal them if the parent dies, so none outlives it.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from echoserver.processes.children import die_with_parent
from echoserver.observability.stats import SlotTable, Stats, add
from echoserver.backends.blocking import BlockingBackend
from echoserver.backends.stream import BlockingConnection

log = logging.getLogger("echoserver")

PUBLISH_INTERVAL = 0.5  # seconds between a child's reports of its live counters


def _close_inherited_descriptors(keep: int) -> None:
    """Close every descriptor but stdio and the client's.

    The listener and the wake-up socket, obviously; but also anything else the
    parent had open (other clients' sockets, in an embedding process), which
    would otherwise keep those connections alive after their owners close them.
    """
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


class ForkPerConnectionBackend(BlockingBackend):
    name = "fork"
    poll_interval = 1.0  # reap even where no SIGCHLD handler can be installed (not the main thread)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.max_children
        self.limit = min(limit, self.config.max_connections or limit)
        self.children: dict[int, int] = {}  # pid -> the row of the table it reports into
        self._free_rows = list(range(self.limit))
        # Each child reports its connection's bytes and messages here while it runs;
        # the parent folds a child's row into its own counters when it reaps it.
        self.table = SlotTable(self.limit)

    @property
    def active(self) -> int:
        return len(self.children)

    def has_capacity(self) -> bool:
        return len(self.children) < self.limit

    def snapshot(self) -> dict:
        totals = super().snapshot()
        add(totals, self.table.total(list(self.children.values())))
        totals["active"] = len(self.children)
        return totals

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        signal.signal(signal.SIGCHLD, lambda signum, frame: self.wake())

    def dispatch(self, connection: BlockingConnection) -> None:
        self.state.closed(connection)  # the child serves it; the parent counts PIDs
        parent, row = os.getpid(), self._free_rows.pop()
        self.stats.count("accepted")
        pid = os.fork()
        if pid == 0:
            self._child(connection, parent, row)
        self.children[pid] = row
        connection.sock.close()

    def _child(self, connection: BlockingConnection, parent: int, row: int) -> None:
        status = 1
        try:
            die_with_parent(parent)
            _close_inherited_descriptors(keep=connection.sock.fileno())
            # Fresh counters: another thread of the parent may have held the old lock at fork time.
            self.stats = Stats()
            self.stopping = False
            force_at = None

            def publish() -> None:
                # Only what the parent cannot count itself: it knows accepts and exits.
                self.table.write(row, {**self.stats.snapshot(), "accepted": 0, "closed": 0, "active": 0})

            def on_signal(signum: int, frame: object) -> None:
                nonlocal force_at
                if signum == signal.SIGALRM:  # the reporting timer
                    publish()
                    if force_at is not None and time.monotonic() >= force_at:
                        connection.abort()
                elif self.stopping:
                    connection.abort()
                else:
                    self.stopping = True
                    force_at = time.monotonic() + self.config.grace
                    connection.drain()

            signal.set_wakeup_fd(-1)  # the parent's wake socket is closed here
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
                signal.signal(signum, on_signal)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, PUBLISH_INTERVAL, PUBLISH_INTERVAL)
            connection.run()
            signal.setitimer(signal.ITIMER_REAL, 0)
            publish()
            status = 0
        except BaseException:  # noqa: BLE001 - a child must never return into the parent's loop
            log.exception("connection process failed")
        finally:
            os._exit(status)

    def on_wake(self) -> None:
        self.reap()

    def reap(self) -> None:
        """Collect every exited child of ours (and only ours: never ``waitpid(-1)``)."""
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                row = self.children.pop(pid)
                self.stats.absorb(self.table.take(row))
                self.stats.count("closed")
                self._free_rows.append(row)

    def drain(self) -> None:
        deadline = time.monotonic() + self.config.grace
        self._signal_children(signal.SIGTERM)
        self.wait_until_idle(deadline)
        if self.children:
            log.warning("grace period over: killing %d connection process(es)", len(self.children))
            self._signal_children(signal.SIGKILL)
            self.wait_until_idle(time.monotonic() + 5.0, forced=True)

    def wait_until_idle(self, deadline: float, forced: bool = False) -> None:
        while self.children and time.monotonic() < deadline and (forced or not self.forcing):
            self.reap()
            if self.children:
                time.sleep(0.02)
        self.reap()

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
