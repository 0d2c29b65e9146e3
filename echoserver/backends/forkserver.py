"""The fork server: a small process that forks one child per connection from its own small heap.

A forked child copies every page of its parent that it writes to, and CPython
writes to an object whenever it so much as takes a reference to it. A child
forked from the full server (click, logging set up, metrics, the framework)
copied ~1.5 MiB; this process is started with ``exec``, imports only what a
connection child needs (the blocking connection loop, the handlers, the
counters) and nothing else, so a child forked from it copies far less. It is
multiprocessing's ``forkserver``, or Android's zygote, for connections.

The main process (:mod:`echoserver.backends.forkclient`) keeps everything else:
it accepts, enforces the limits, drains, reports. Over a ``SOCK_SEQPACKET``
socket it sends each accepted socket (``send_fds``) with the row of shared
counters its child is to use; this process forks, and answers with the child's
PID, and once it has reaped the child, with its exit status. Children:

* log through :class:`~echoserver.processes.relay.PipeHandler`: one
  preformatted record per ``write`` to a pipe the main process reads and
  re-logs in its own format (text or JSON);
* count into their row of a shared :class:`~echoserver.observability.stats.SlotTable`,
  only when asked (SIGUSR1, see :class:`~echoserver.processes.relay.CounterRequests`)
  and once at the end: an idle connection never wakes up;
* drain on SIGTERM (what is already read is echoed, then EOF), and cut the
  connection on a second SIGTERM or when ``--grace`` runs out.

This process dies with the main process (SIGTERM from the kernel); it then
gives its children the grace period, SIGKILLs what remains and exits. Run as
``python -S -c 'from echoserver.backends.forkserver import main; main()' ...``.
"""

from __future__ import annotations

import _signal
import contextlib
import os
import select
import signal
import socket
import struct
import sys
import time

#: Every message either way: kind, row, PID, wait status.
#: Main -> here: ``C`` (a connection; its socket attached). Here -> main: ``R`` ready, ``F`` forked, ``X`` exited.
MESSAGE = struct.Struct("=ciii")
SIGTERM, SIGINT, SIGUSR1, SIGALRM, SIGCHLD = (
    int(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGALRM, signal.SIGCHLD)
)
SIG_UNBLOCK, ITIMER_REAL = int(signal.SIG_UNBLOCK), signal.ITIMER_REAL
CHILD_SIGNALS = (SIGTERM, SIGINT, SIGUSR1, SIGALRM)
FD = struct.Struct("=i")
FD_SPACE = socket.CMSG_SPACE(FD.size)


def Owner(config, tls, banner: bytes):  # noqa: N802 - stands where a class stood
    """What the connection loop reads off whoever runs it: the backends' ServerState (config, TLS, banner,
    how to sleep and wait). Its counters are set before the first fork; each child counts into its own copy."""
    from echoserver.backends.state import ServerState

    state = ServerState("fork", config, None, tls, banner)
    state.counts_on_exit = True  # counters are published on request (SIGUSR1) and at the end only
    return state


class ForkServer:
    def __init__(self, ctl: socket.socket, owner, table, requests) -> None:
        # Everything a child runs is imported here, once, before any fork: an import in the
        # child would cost every connection its own copy of the module.
        from echoserver.backends.stream import BlockingConnection, counts_held_by
        from echoserver.observability.stats import Stats
        from echoserver.processes.children import fork_child, set_process_name

        self.connection_class, self.stats_class = BlockingConnection, Stats
        self.counts_held_by = counts_held_by
        self.ctl, self.owner, self.table, self.requests = ctl, owner, table, requests
        self.fork_child, self.set_process_name = fork_child, set_process_name
        self.children: dict[int, int] = {}  # pid -> row
        self.stopping_at: float | None = None  # the main process is gone: children get the grace period
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)

    def run(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so the wake-up fd hears it
        signal.signal(signal.SIGTERM, lambda signum, frame: self.orphaned())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.warm_up()
        import gc

        gc.freeze()  # what is here now is shared with every child: keep the collector's hands off it
        self.ctl.send(MESSAGE.pack(b"R", 0, os.getpid(), 0))
        while self.children or self.stopping_at is None:
            timeout = None if self.stopping_at is None else max(0.0, self.stopping_at - time.monotonic())
            watching: list = [self.wake_r] if self.stopping_at is not None else [self.wake_r, self.ctl]
            readable = select.select(watching, [], [], timeout)[0]
            if self.wake_r in readable:
                try:
                    while os.read(self.wake_r, 256):
                        pass
                except BlockingIOError:
                    pass
            self.reap()
            if self.ctl in readable:
                self.receive()
            if self.stopping_at is not None and time.monotonic() >= self.stopping_at and self.children:
                for pid in self.children:
                    os.kill(pid, signal.SIGKILL)
                self.stopping_at = time.monotonic() + 5.0
        self.ctl.close()

    def receive(self) -> None:
        # recvmsg itself rather than socket.recv_fds: as little Python as possible runs here
        # between two forks, since every page written here is one more page each child owns.
        try:
            message, ancillary, _, _ = self.ctl.recvmsg(MESSAGE.size, FD_SPACE)
        except OSError:
            message, ancillary = b"", []
        if not message:  # the main process closed its end, or died
            self.orphaned()
            return
        kind, row, pid, signum = MESSAGE.unpack(message)
        if kind == b"K":
            # Signal a child (pid 0: every child) for the main process: only their parent knows that
            # a PID is still the child's (not yet reaped, so not yet reused); the main process could
            # hit a stranger.
            for child in [pid] if pid else list(self.children):
                if child in self.children:
                    os.kill(child, signum)
            return
        if not ancillary or len(ancillary[0][2]) < FD.size:
            self.report(b"X", row, 0, 1 << 8)
            return
        fd = FD.unpack_from(ancillary[0][2])[0]
        try:
            pid = self.fork_child(
                lambda: self.serve(fd, row), block=CHILD_SIGNALS, what="connection process", flush=False
            )
        except OSError as exc:  # EAGAIN, ENOMEM: the client is closed, the main process frees the row
            import logging

            logging.getLogger("echoserver").warning("cannot fork a connection process: %s", exc.strerror)
            os.close(fd)
            self.report(b"X", row, 0, 1 << 8)
            return
        os.close(fd)
        self.children[pid] = row
        self.report(b"F", row, pid, 0)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)  # only ever our own children here
            except ChildProcessError:
                break
            if not pid:
                break
            row = self.children.pop(pid, None)
            if row is not None:
                self.report(b"X", row, pid, status)

    def report(self, kind: bytes, row: int, pid: int, status: int) -> None:
        if self.stopping_at is None:
            try:
                self.ctl.send(MESSAGE.pack(kind, row, pid, status))
            except OSError:
                self.orphaned()

    def orphaned(self) -> None:
        """The main process is gone: let the children finish within the grace period, as it would have."""
        if self.stopping_at is None:
            self.stopping_at = time.monotonic() + self.owner.config.grace
            for pid in self.children:
                os.kill(pid, signal.SIGTERM)

    # -- in the child ---------------------------------------------------------------

    def serve(self, fd: int, row: int) -> int:
        """The body of a connection process: serve the one socket, report the counters, exit."""
        # The C-level calls throughout: signal.signal's enum conversions, or ctypes for the name,
        # would each touch (and so copy) pages of objects this process otherwise never uses.
        _signal.set_wakeup_fd(-1)
        for descriptor in (self.wake_r, self.wake_w, self.ctl.detach()):
            os.close(descriptor)
        name = os.open("/proc/self/comm", os.O_WRONLY)
        os.write(name, b"echo-connection")
        os.close(name)
        owner = self.owner
        stats = owner.stats  # made before the first fork (warm_up): a fresh one here would copy its pages
        sock = socket.socket(fileno=fd)
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        connection = self.connection_class(sock, owner, peer)
        table, requests, draining, counts_held_by = self.table, self.requests, False, self.counts_held_by

        def publish(frame=None) -> None:
            # Only what the main process cannot count itself: it knows accepts and exits.
            totals = stats.snapshot()
            for name, held in zip(("bytes_in", "bytes_out", "messages"), counts_held_by(frame)):
                totals[name] += held  # what the echo loop holds in its locals until it ends
            table.write(row, {**totals, "accepted": 0, "closed": 0, "active": 0})

        def on_signal(signum: int, frame) -> None:
            nonlocal draining
            if signum == SIGUSR1:
                publish(frame)
                requests.answer(row)
            elif signum == SIGALRM or draining:
                connection.abort()
            else:
                draining = True
                connection.drain()
                _signal.setitimer(ITIMER_REAL, max(owner.config.grace, 0.001))

        for signum in CHILD_SIGNALS:
            _signal.signal(signum, on_signal)
        _signal.signal(SIGCHLD, 0)  # SIG_DFL
        _signal.pthread_sigmask(SIG_UNBLOCK, CHILD_SIGNALS)
        connection.run()
        _signal.setitimer(ITIMER_REAL, 0)
        publish()
        return 0

    def warm_up(self, times: int = 12) -> None:
        """Run the connection loop here a few times, on socket pairs, before the first fork.

        CPython 3.11 quickens a function after a few calls by rewriting its bytecode in
        place, and lazily fills caches; done here once, those writes land in pages every
        child shares instead of being copied into each child.
        """
        config = self.owner.config.replace(
            io_delay=0,
            delay=(0.0, 0.0),
            trickle=0,
            reset_probability=0,
            max_bytes_per_connection=0,
            proxy_protocol="off",
        )
        owner = Owner(config, None, self.owner.banner)
        owner.stats = self.stats_class()
        for _ in range(times):
            ours, theirs = socket.socketpair()
            theirs.sendall(b"warm-up\n")
            theirs.shutdown(socket.SHUT_WR)
            self.connection_class(ours, owner, None).run()
            theirs.close()
        owner.stats.snapshot()
        self.owner.stats = self.stats_class()  # zeros, for every child to start from


@contextlib.contextmanager
def no_fork_hooks():
    """Import modules without letting them register ``os.register_at_fork`` hooks.

    ``threading``, ``logging`` and ``random`` each register a hook that runs in
    every forked child, and running them costs each child ~450 KiB of copied
    pages (bench/fork_memory.py measures it): more than the bare child itself.
    Here they have nothing to do: this process has one thread and forks from its
    main loop, holding no lock, so there is no other thread's state to clear nor
    a lock to re-initialise; and the one random generator a connection uses
    (fault injection's) is made, and seeded from the OS, in the child.
    """
    register = os.register_at_fork
    os.register_at_fork = lambda **hooks: None
    try:
        yield
    finally:
        os.register_at_fork = register


def main(argv: list[str] | None = None) -> None:
    """``CTL LOG COUNTERS REQUESTS ROWS PARENT LEVEL``: descriptors and settings from the main process."""
    ctl_fd, log_fd, counters_fd, requests_fd, rows, parent, level = map(int, argv or sys.argv[1:])
    with no_fork_hooks():
        import logging
        import pickle
        import random  # noqa: F401 - imported here, so that it registers no hook

        from echoserver.backends.base import banner_bytes
        from echoserver.backends.stream import BlockingConnection  # noqa: F401 - everything a child runs, now
        from echoserver.net.tls import server_context
        from echoserver.observability.stats import SlotTable
        from echoserver.processes.children import die_with_parent, set_process_name
        from echoserver.processes.relay import CounterRequests, PipeHandler

    die_with_parent(parent)
    set_process_name(b"echo-forkserver")
    root = logging.getLogger("echoserver")
    root.addHandler(PipeHandler(log_fd).handler)
    root.setLevel(level)
    root.propagate = False
    ctl = socket.socket(fileno=ctl_fd)
    config = pickle.loads(ctl.recv(1 << 16))
    with no_fork_hooks():
        tls = server_context(config)  # imports ssl, if TLS is on
    owner = Owner(config, tls, banner_bytes(config.banner, config.backend))
    ForkServer(ctl, owner, SlotTable(rows, counters_fd), CounterRequests(rows, requests_fd)).run()
