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
import socket
import time

from .._process_utils import die_with_parent
from .blocking import BlockingBackend
from .connection import BlockingConnection

log = logging.getLogger("echoserver")


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
        self.children: set[int] = set()

    @property
    def active(self) -> int:
        return len(self.children)

    def has_capacity(self) -> bool:
        limit = min(self.config.max_children, self.config.max_connections or self.config.max_children)
        return len(self.children) < limit

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        signal.signal(signal.SIGCHLD, lambda signum, frame: self.wake())

    def dispatch(self, connection: BlockingConnection) -> None:
        with self._lock:
            self.connections.discard(connection)  # the child serves it; the parent counts PIDs
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._child(connection, parent)
        self.children.add(pid)
        self.stats.accepted += 1
        connection.sock.close()

    def _child(self, connection: BlockingConnection, parent: int) -> None:
        status = 1
        try:
            die_with_parent(parent)
            _close_inherited_descriptors(keep=connection.sock.fileno())
            self.stopping = False
            grace = self.config.grace

            def on_signal(signum: int, frame: object) -> None:
                if signum == signal.SIGALRM or self.stopping:
                    connection.abort()
                    return
                self.stopping = True
                connection.drain()
                signal.alarm(max(1, int(grace + 0.999)))

            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
                signal.signal(signum, on_signal)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            connection.run()
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
                self.children.discard(pid)
                self.stats.closed += 1

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
