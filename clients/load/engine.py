"""What both load loops stand on: one worker thread multiplexing many connections over epoll.

A load generator that is slower than the server measures itself, so this is
laid out the way wrk and tcpkali are, not the way tutorials are: a few threads,
each running its own event loop over its share of the connections, instead of
one blocking thread per connection. This base class connects, sends, reads and
verifies, and keeps time (timeouts, phase changes, progress, a few times a
second in :meth:`EpollWorker.housekeeping`); the loop that decides *when* a
message leaves is a subclass: :class:`~echoclients.load.closedloop.ClosedLoopWorker`
(the next message when a reply is back) or
:class:`~echoclients.load.openloop.OpenLoopWorker` (``--rate``, on a schedule).
"""

from __future__ import annotations

import select
from collections import Counter

from echoclients.load.connecting import TICK_S, Connecting
from echoclients.load.connection import Connection, clock, error_kind
from echoclients.load.payload import Stream
from echoclients.load.results import LatencyRecorder

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
SWEEP_NS = 250_000_000  # how often replies overdue past --timeout are looked for


class EpollWorker(Connecting):
    """Drives its connections from connect to close inside one thread.

    ``schedule`` is shared by every worker of the run: a barrier passed once
    all have connected, then the same warmup and window lengths for all, and
    passed again before anyone hangs up.
    """

    def __init__(
        self,
        spec,
        streams: list[tuple[int, Stream]],
        address: tuple,
        schedule,
        progress=None,
        slot: int = 0,
        requests: int = 0,
        rate: float = 0.0,
        probe=None,
        opening=None,
        sources: list[str] | None = None,
    ) -> None:
        self.spec = spec
        self.opening = opening  # an Opening, or None: ready as soon as TCP is
        self.size = spec.size
        self.family, self.sockaddr = address
        views: dict[int, memoryview] = {}  # one per pool, not one per connection (184 bytes each)
        self.conns = [
            Connection(index, stream, views.setdefault(id(stream.sent), memoryview(stream.sent)))
            for index, stream in streams
        ]
        self.by_fd: dict[int, Connection] = {}
        self.epoll = select.epoll()
        self.schedule = schedule
        self.progress, self.slot = progress, slot
        self.requests, self.rate = requests, rate
        self.probe = probe  # called at the window's start and end (the first worker samples CPU)
        self.latency = LatencyRecorder()
        self.connect_latency = LatencyRecorder()
        self.lateness: LatencyRecorder | None = None  # an open loop's send lateness (openloop.py)
        self.errors: Counter = Counter()
        self.mismatches = 0
        self.completed = 0
        self.window: list[int] = []  # [start_ns, end_ns]
        self.baseline: list[int] = []
        self.baseline_total = 0
        self.now = 0
        self.timeout_ns = int(spec.timeout * 1e9)
        period = streams[0][1].period if streams else spec.size
        # A closed loop never has more than --pipeline replies owed; an open one may.
        self.cap = period if rate else min(spec.pipeline * spec.size, period)
        self.running = True
        self.lost: list[Connection] = []  # --reconnect: dropped during the run, replaced by housekeeping
        self.replacing = False  # True from the connect barrier on: before it, a failure is final
        self.reconnects = 0
        self.next_sweep = 0
        self.failures = 0  # connections dropped so far: an open loop's list of live ones is stale when it moves
        rate = spec.connect_rate * len(self.conns) / spec.clients if spec.connect_rate else 0
        self.connect_interval_ns = int(1e9 / rate) if rate else 0
        self.sources: list[str | None] = [*sources] if sources else [None]  # local addresses to connect from, in turn

    # -- lifetime ----------------------------------------------------------------

    def run(self) -> None:
        try:
            self.connect_all()
            self.schedule.wait()
            if self.probe:  # every worker, in every process, has connected: nothing has been sent yet
                self.probe("connected")
            now = clock()
            self.measure_at = now + int(self.spec.warmup_seconds * 1e9)
            self.stop_at = self.measure_at + int(self.spec.run_seconds * 1e9)
            self.stop_after = float("inf")
            self.next_tick = now
            self.replacing = self.spec.reconnect
            self.drive(now)
            if not self.window:  # stopped before the window opened: an empty one
                self.window = [clock(), clock()]
        except BaseException:
            self.schedule.abort()
            raise
        finally:
            self.schedule.wait()  # every window closed before any connection does
            for conn in self.conns:
                if conn.sock is not None:
                    conn.sock.close()
            self.epoll.close()
            self.latency.fold()
            self.connect_latency.fold()
            if self.lateness is not None:
                self.lateness.fold()

    def drive(self, now: int) -> None:
        """The loop itself, from the end of the connect barrier until ``running`` goes False."""
        raise NotImplementedError  # ClosedLoopWorker or OpenLoopWorker

    # -- per message ---------------------------------------------------------------

    def receive(self, conn: Connection) -> int:
        """Read what is there, verify every byte, record latencies; the replies completed."""
        try:
            data = conn.recv(self.cap)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self.fail(conn, error_kind(exc))
            return 0
        self.now = clock()
        return self.absorb(conn, data, self.now)

    def absorb(self, conn: Connection, data: bytes, now: int) -> int:
        n = len(data)
        if not n:  # the server closed: between replies, or in the middle of one
            self.fail(conn, "short_read" if conn.partial else "closed_by_server")
            return 0
        if not conn.expected.startswith(data, conn.rpos):
            self.mismatches += conn.bad_messages(data, self.size)
        elif conn.corrupt and conn.partial + n >= self.size:
            self.mismatches += 1  # an earlier read spoiled the message this one completes
            conn.corrupt = False
        rpos = conn.rpos + n
        conn.rpos = rpos if rpos < conn.high else rpos - conn.period
        partial = conn.partial + n
        size = self.size
        if partial < size:
            conn.partial = partial
            return 0
        done, conn.partial = divmod(partial, size)
        conn.messages += done
        self.completed += done
        record, sent_at = self.latency.record, conn.sent_at
        for _ in range(done):
            record(now - sent_at.popleft())
        return done

    def queue(self, conn: Connection, messages: int, now: int) -> None:
        conn.sent_at.extend([now] * messages) if messages > 1 else conn.sent_at.append(now)
        conn.owed += messages * self.size
        self.flush(conn)

    def flush(self, conn: Connection) -> None:
        """Hand the kernel as much of what is owed as it takes; wait for EPOLLOUT for the rest."""
        spos = conn.spos
        try:
            sent = conn.send(conn.out[spos : spos + min(conn.owed, conn.period)])
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.fail(conn, error_kind(exc))
            return
        conn.owed -= sent
        self.advance(conn, sent)

    def advance(self, conn: Connection, sent: int) -> None:
        """Move the send position on; watch for EPOLLOUT exactly while something is owed."""
        spos = conn.spos + sent
        conn.spos = spos if spos < conn.high else spos - conn.period
        if bool(conn.owed) != conn.writing:
            conn.writing = bool(conn.owed)
            self.epoll.modify(conn.sock.fileno(), EPOLLIN | EPOLLOUT if conn.writing else EPOLLIN)

    def fail(self, conn: Connection, kind: str) -> None:
        """Count the failure and drop the connection; the others carry on."""
        self.errors[kind] += 1
        if conn.sock is None:
            return
        self.failures += 1
        fd = conn.sock.fileno()
        if self.by_fd.pop(fd, None) is not None:
            self.epoll.unregister(fd)
        conn.sock.close()
        conn.sock = None
        if self.replacing:
            self.lost.append(conn)

    # -- a few times a second ------------------------------------------------------

    def housekeeping(self) -> None:
        now = clock()
        self.next_tick = now + int(TICK_S * 1e9)
        if not self.window and now >= self.measure_at:
            self.bring_back_connections()
            self.open_window(now)
        if self.window and (now >= self.stop_at or self.completed >= self.stop_after):
            self.close_window(now)
        if now >= self.next_sweep:  # a walk over every connection: a few times a second, not every tick
            self.bring_back_connections()
            self.next_sweep = now + SWEEP_NS
            stale = now - self.timeout_ns
            for conn in self.conns:
                if conn.sock is not None and conn.sent_at and conn.sent_at[0] < stale:
                    self.fail(conn, "timeout")
        if self.spec.tls:
            self.read_tls_buffers()
        if self.lost and self.running:
            self.bring_back_connections()
            self.reopen()
        if not self.by_fd and not self.lost:
            self.running = False
            if self.window and len(self.window) == 1:
                self.close_window(now)
        self.latency.maybe_fold()
        if self.progress is not None:
            self.progress[self.slot] = self.completed - (self.baseline_total if self.window else 0)

    def bring_back_connections(self) -> None:
        """Called before housekeeping reads the connections' own state (their counts, send times, sockets).

        The Python loops keep that state in the :class:`Connection` objects all along; the compiled
        closed loop keeps it in a table and copies it back here (``ClosedLoopWorker``).
        """

    def reopen(self) -> None:
        """``--reconnect``: see :func:`echoclients.load.reconnect.replace_lost`."""
        from echoclients.load.reconnect import replace_lost

        replace_lost(self)

    def read_tls_buffers(self) -> None:
        """Replies decrypted but left in the TLS layer by a read that reached its cap raise no epoll event.

        Only an open loop can be owed more than one read's cap, so this is a
        safety net, not a path replies normally take.
        """
        for conn in self.conns:
            if conn.sock is not None and conn.opening is None and conn.sock.pending():
                done = self.receive(conn)
                if done and not self.rate:
                    self.queue(conn, done, self.now)

    def open_window(self, now: int) -> None:
        """Warmup is over: forget what was recorded so far and start counting."""
        self.latency.clear()
        self.baseline = [conn.messages for conn in self.conns]
        self.baseline_total = self.completed
        if self.spec.requests:  # a worker whose share is 0 stops at once
            self.stop_after = self.completed + self.requests
        self.window = [now]
        if self.probe:
            self.probe("start")

    def close_window(self, now: int) -> None:
        if len(self.window) == 1:
            self.window.append(now)
            if self.probe:
                self.probe("end")
        self.running = False

    def per_connection(self) -> list[int]:
        base = self.baseline or [0] * len(self.conns)
        return [conn.messages - before for conn, before in zip(self.conns, base)]

    @property
    def window_messages(self) -> int:
        return self.completed - getattr(self, "baseline_total", self.completed)
