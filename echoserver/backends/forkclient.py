"""The main process's side of the fork server: start it, hand it sockets, hear what became of them.

See :mod:`echoserver.backends.forkserver` for why a fork server exists. What
lives here is what outlives any one fork server, so that a restarted one picks
up where the dead one left off: the shared counter rows, the counter requests,
the log pipe. Connection processes whose fork server died are re-parented to
this process (it is a child subreaper while it runs one), so they go on
serving and are still reaped, counted and drained.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from echoserver.backends.forkserver import MESSAGE
from echoserver.config import ServerConfig
from echoserver.observability.stats import SlotTable
from echoserver.processes.relay import CounterRequests

log = logging.getLogger("echoserver")

START_TIMEOUT = 20.0  # seconds for a fresh interpreter to import the connection loop and say it is ready
ANSWER_TIMEOUT = 0.25  # seconds a snapshot waits for connection processes to publish their counters
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)


class ForkServerGone(OSError):
    """The fork server exited or could not be started."""


class ForkServerClient:
    """One fork server at a time: :meth:`start` a new one after the last one died."""

    def __init__(self, config: ServerConfig, rows: int) -> None:
        self.config = config
        self.rows = rows
        counters_fd = os.memfd_create("echoserver-counters")
        requests_fd = os.memfd_create("echoserver-counter-requests")
        self.table = SlotTable(rows, counters_fd)  # mmap keeps its own duplicate of each descriptor
        self.requests = CounterRequests(rows, requests_fd)
        self._fds = [counters_fd, requests_fd]
        self.log_r, self.log_w = os.pipe()
        os.set_blocking(self.log_r, False)
        self._log_tail = b""
        self.proc: subprocess.Popen | None = None
        self.ctl: socket.socket | None = None
        self.started = 0.0

    @property
    def alive(self) -> bool:
        return self.ctl is not None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self) -> None:
        """Start a fork server and wait until it is ready; raises :class:`ForkServerGone` if it is not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        level = logging.getLogger("echoserver").getEffectiveLevel()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
        args = [
            sys.executable,
            "-S",
            "-c",
            "from echoserver.backends.forkserver import main; main()",
            *map(str, (theirs.fileno(), self.log_w, *self._fds, self.rows, os.getpid(), level)),
        ]
        try:
            # Its own process group (with its children): a Ctrl-C reaches this process alone, which drains them once.
            self.proc = subprocess.Popen(
                args,
                pass_fds=(theirs.fileno(), self.log_w, *self._fds),
                env=env,
                stdin=subprocess.DEVNULL,
                process_group=0,
            )
        finally:
            theirs.close()
        self.started = time.monotonic()
        try:
            ours.settimeout(START_TIMEOUT)
            ours.send(pickle.dumps(self.config))
            ready = ours.recv(MESSAGE.size)
            if not ready or ready[:1] != b"R":
                raise ForkServerGone(f"the fork server (pid {self.proc.pid}) exited before it was ready")
        except BaseException:
            ours.close()
            self._end(kill=True)
            raise
        ours.settimeout(None)
        self.ctl = ours

    def send(self, sock: socket.socket, row: int) -> None:
        """Hand over an accepted socket; the caller closes its own copy."""
        try:
            socket.send_fds(self.ctl, [MESSAGE.pack(b"C", row, 0, 0)], [sock.fileno()])
        except OSError as exc:
            raise ForkServerGone(str(exc)) from None

    def signal(self, pid: int, signum: int) -> None:
        """Have the fork server send ``signum`` to its child ``pid`` (0: to every child), if still unreaped.

        One message for all children, not one each: a drain of hundreds would otherwise fill the
        control socket while the fork server fills ours with exit reports.

        Not ``os.kill`` from here: the fork server reaps its children, and a
        PID it has reaped may already belong to another process by the time
        this one learns of the exit. If the fork server is gone, its children
        are this process's own (adopted) and the caller signals them itself.
        """
        if self.ctl is None:
            return
        try:
            self.ctl.send(MESSAGE.pack(b"K", 0, pid, signum))
        except OSError:
            pass  # it just died: the death is handled as the control socket reports it

    def watch(self) -> list:
        """What to wait on for news: the control socket (while a fork server runs) and the log pipe."""
        return [self.ctl, self.log_r] if self.ctl is not None else [self.log_r]

    def events(self) -> list[tuple[bytes, int, int, int]]:
        """``(kind, row, pid, status)`` of every message waiting; kind ``D`` (last) if the fork server died."""
        found = []
        self.ctl.setblocking(False)
        try:
            while True:
                message = self.ctl.recv(MESSAGE.size)
                if not message:
                    break
                found.append(MESSAGE.unpack(message))
        except BlockingIOError:
            self.ctl.setblocking(True)
            return found
        except OSError:
            pass
        status = self._end(kill=True)
        found.append((b"D", 0, self.proc.pid, status))
        return found

    def relay_logs(self) -> None:
        """Log what connection processes and the fork server wrote, in this process's format."""
        try:
            while chunk := os.read(self.log_r, 65536):
                self._log_tail += chunk
        except BlockingIOError:
            pass
        *records, self._log_tail = self._log_tail.split(b"\0")
        for record in records:
            try:
                level, name, pid, text = record.decode(errors="replace").split(" ", 3)
                logging.getLogger(name).log(int(level), "%s (connection process %s)", text, pid)
            except ValueError:
                log.warning("unreadable log record from a connection process: %r", record[:200])

    def collect(self, rows: list[int], signal_children: Callable[[int], None]) -> None:
        """Ask every connection process for its counters and wait (briefly) until each has published them.

        ``signal_children(signum)`` delivers the request safely (see :meth:`signal`).
        """
        if not rows:
            return
        generation = self.requests.ask()
        signal_children(signal.SIGUSR1)
        deadline = time.monotonic() + ANSWER_TIMEOUT
        pending = list(rows)
        while pending and time.monotonic() < deadline:
            pending = [row for row in pending if not self.requests.answered(row, generation)]
            if pending:
                time.sleep(0.002)

    def stop(self, timeout: float = 5.0) -> None:
        """Close the control socket: a fork server with no children left exits at once."""
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        self._end(kill=False, timeout=timeout)

    def close(self) -> None:
        self.stop()
        self.relay_logs()
        for fd in (*self._fds, self.log_r, self.log_w):
            os.close(fd)
        self._fds = []

    def _end(self, kill: bool, timeout: float = 5.0) -> int:
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if self.proc is None or self.proc.returncode is not None:
            return 0 if self.proc is None else _wait_status(self.proc.returncode)
        try:
            self.proc.wait(0.5 if kill else timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return _wait_status(self.proc.returncode)


def _wait_status(returncode: int) -> int:
    """Popen's return code back into a ``waitpid`` status, for :func:`~echoserver.processes.children.describe_exit`."""
    return -returncode if returncode < 0 else returncode << 8
