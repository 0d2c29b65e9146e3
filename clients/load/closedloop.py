"""The default load loop, and the hot path: each reply releases the next message.

Per message it does one ``recv``, one ``bytes.startswith`` (a ``memcmp``
against the expected stream at an offset, without copying), one
``array.append`` of the latency, and one ``send``; everything else happens in
:meth:`~echoclients.load.engine.EpollWorker.housekeeping`, a few times a second.
"""

from __future__ import annotations

from echoclients.load.connection import Connection, clock, error_kind
from echoclients.load.engine import EPOLLIN, EPOLLOUT, TICK_S, EpollWorker


class ClosedLoopWorker(EpollWorker):
    """A closed loop: at most ``--pipeline`` messages in flight on each connection."""

    def drive(self, now: int) -> None:
        """``--pipeline`` messages out on each connection, then one more for each reply."""
        for conn in self.conns:
            if conn.sock is not None:
                self.queue(conn, self.spec.pipeline, now)
        self.closed_loop()

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
