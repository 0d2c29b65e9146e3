"""``--rate``: messages leave on a schedule, whatever the replies do (an open loop).

A closed loop lets a stalled server hold the client back, so the messages a
user arriving at a fixed rate would have sent during the stall are never sent,
and the stall never shows in the latencies (coordinated omission). Here each
message carries its *intended* send time, and is charged from then.
"""

from __future__ import annotations

from echoclients.load.connection import clock
from echoclients.load.engine import EPOLLOUT, TICK_S, EpollWorker


class OpenLoopWorker(EpollWorker):
    """``rate`` messages a second over this worker's live connections, in turn."""

    def drive(self, start: int) -> None:
        poll, by_fd, receive = self.epoll.poll, self.by_fd, self.receive
        interval = 1e9 / self.rate
        sent = 0
        while self.running:
            now = clock()
            due = start + int(sent * interval)
            if due <= now:
                live = [conn for conn in self.conns if conn.sock is not None]
                while due <= now and live:
                    conn = live[sent % len(live)]
                    conn.sent_at.append(due)
                    conn.owed += self.size
                    self.flush(conn)
                    sent += 1
                    due = start + int(sent * interval)
            wait = min(TICK_S, max(0.0, (due - clock()) / 1e9))
            for fd, mask in poll(wait):
                conn = by_fd[fd]
                if mask & EPOLLOUT:
                    self.flush(conn)
                if mask != EPOLLOUT and conn.sock is not None:
                    receive(conn)
            if self.completed >= self.stop_after or clock() >= self.next_tick:
                self.housekeeping()
