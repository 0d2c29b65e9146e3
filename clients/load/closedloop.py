"""The default load loop, and the hot path: each reply releases the next message.

Per message it does one ``recv``, one ``bytes.startswith`` (a ``memcmp``
against the expected stream at an offset, without copying), one
``array.append`` of the latency, and one ``send``; everything else happens in
:meth:`~echoclients.load.engine.EpollWorker.housekeeping`, a few times a second.
"""

from __future__ import annotations

from array import array

from echoclients.load import hotloop
from echoclients.load.connection import Connection, clock, error_kind
from echoclients.load.engine import EPOLLIN, EPOLLOUT, TICK_S, EpollWorker

_NO_LIMIT = 1 << 62


class ClosedLoopWorker(EpollWorker):
    """A closed loop: at most ``--pipeline`` messages in flight on each connection."""

    table: hotloop.ConnectionTable | None = None  # while the compiled loop runs
    brought_back = False  # this housekeeping has copied the table's rows back

    def drive(self, now: int) -> None:
        """``--pipeline`` messages out on each connection, then one more for each reply."""
        for conn in self.conns:
            if conn.sock is not None:
                self.queue(conn, self.spec.pipeline, now)
        if hotloop.chosen(self.spec) == "compiled":
            self.compiled_loop()
        else:
            self.closed_loop()

    def compiled_loop(self) -> None:
        """The same loop with its common case in C (``_hotloop.c``); Python handles what C hands back.

        Between stretches of the C loop only the deferred events, and a few
        times a second the housekeeping, run here. The rows go back to the
        :class:`Connection` objects only when something reads them: the
        timeout sweep, the window's edges, a replaced connection, the end.
        """
        self.table = table = hotloop.ConnectionTable(self.conns)
        table.push_all()
        latencies = array("q", bytes(8 * max(1 << 16, 2 * len(self.conns))))
        raw = memoryview(latencies).cast("B")
        values, by_fd, size, epfd = self.latency.values, self.by_fd, self.size, self.epoll.fileno()
        try:
            while self.running:
                limit = self.stop_after - self.completed
                done, written, now, deferred = hotloop.closed_loop(
                    epfd, table, latencies, size, self.next_tick, _NO_LIMIT if limit > _NO_LIMIT else int(limit)
                )
                self.completed += done
                if written:
                    values.frombytes(raw[: written * 8])
                for kind, fd, value, at in deferred:
                    conn = by_fd.get(fd)
                    if conn is None:  # dropped by an earlier event of the same batch
                        continue
                    table.pull(conn)
                    self.now = at
                    self.deferred_event(conn, kind, value, at)
                    if conn.sock is not None:
                        table.push(conn)
                if now >= self.next_tick or self.completed >= self.stop_after:
                    self.brought_back = False
                    self.housekeeping()
                    if self.brought_back:
                        table.push_all()
        finally:
            table.pull_all()
            self.table = None

    def bring_back_connections(self) -> None:
        """The compiled loop's rows back into the :class:`Connection` objects, once per housekeeping.

        Only then: a copy of every row costs a few microseconds per connection, so it is made
        for the timeout sweep, the window's start and a reconnect, not on every 20 ms tick.
        """
        if self.table is not None and not self.brought_back:
            self.table.pull_all()
            self.brought_back = True

    def deferred_event(self, conn: Connection, kind: int, value, now: int) -> None:
        """What the C loop handed back, done as :meth:`closed_loop` would have done it."""
        if kind == hotloop.DEFER_READ:
            done = self.absorb(conn, value, now)
            if done:
                self.queue(conn, done, now)
        elif kind == hotloop.DEFER_SENT:
            conn.owed = self.size - value
            self.advance(conn, value)
        elif kind == hotloop.DEFER_EVENT:
            self.general_event(conn, value)
        else:
            self.fail(conn, error_kind(value))

    def closed_loop(self) -> None:
        """Each complete reply releases the next message on its connection.

        The common case (one whole reply in one read, verified, the next
        message accepted whole by the kernel) is written out inline: at 100k+
        messages/s, a Python method call per step is a measurable share of the
        client's time. Anything else takes the general path.
        """
        poll, by_fd, size, cap = self.epoll.poll, self.by_fd, self.size, self.cap
        record, general, now_ns, only_in = self.latency.record, self.general_event, clock, EPOLLIN
        maxevents = len(self.conns) + 1
        now, next_tick = 0, self.next_tick
        while self.running:
            events = poll(TICK_S, maxevents)
            if not events:
                now = now_ns()
            fast = 0
            for fd, mask in events:
                conn = by_fd[fd]
                if mask != only_in or conn.partial or conn.owed or conn.corrupt:
                    general(conn, mask)
                    now = now_ns()
                    continue
                try:
                    data = conn.recv(cap)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self.fail(conn, error_kind(exc))
                    continue
                now = now_ns()
                if len(data) != size or not conn.expected.startswith(data, conn.rpos):
                    done = self.absorb(conn, data, now)
                    if done:
                        self.queue(conn, done, now)
                    continue
                rpos = conn.rpos + size
                conn.rpos = rpos if rpos < conn.high else rpos - conn.period
                conn.messages += 1
                fast += 1
                sent_at = conn.sent_at
                record(now - sent_at.popleft())
                sent_at.append(now)
                spos = conn.spos
                try:
                    sent = conn.send(conn.out[spos : spos + size])
                except BlockingIOError:
                    sent = 0
                except OSError as exc:
                    self.fail(conn, error_kind(exc))
                    continue
                if sent == size:
                    spos += size
                    conn.spos = spos if spos < conn.high else spos - conn.period
                else:
                    conn.owed = size - sent
                    self.advance(conn, sent)
            self.completed += fast
            # `now` is the latest clock reading: no extra one per batch just to look at the time.
            if now >= next_tick or self.completed >= self.stop_after:
                self.housekeeping()
                next_tick = self.next_tick

    def general_event(self, conn: Connection, mask: int) -> None:
        if mask & EPOLLOUT:
            self.flush(conn)
        if mask != EPOLLOUT and conn.sock is not None:
            done = self.receive(conn)
            if done:
                self.queue(conn, done, self.now)
