"""``--rate``: messages leave on a schedule, whatever the replies do (an open loop).

A closed loop lets a stalled server hold the client back, so the messages a
user arriving at a fixed rate would have sent during the stall are never sent,
and the stall never shows in the latencies (coordinated omission). Here each
message carries its *intended* send time, and is charged from then.

That makes the client's own punctuality part of every latency: a message that
leaves 1 ms late is reported 1 ms slower. ``epoll_wait`` counts its timeout in
whole milliseconds, so the loop never waits on it for less: a wait shorter than
that goes to ``select`` on the epoll descriptor itself (microsecond timeouts,
with the thread's timer slack cut from 50 us to 1 us), and the last few tens of
microseconds are spent polling without blocking. Each send's lateness (actual
minus intended time) is recorded beside the latencies, so a result says how
much of them the client caused (``send_lateness_us``, and ``client_late``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import select

from echoclients.load.connection import clock
from echoclients.load.engine import EPOLLOUT, TICK_S, EpollWorker
from echoclients.load.results import LatencyRecorder

SPIN_NS = 40_000  # the last stretch of a wait is spent polling, not sleeping: a wake-up is not that punctual
SELECT_LIMIT = 1024  # select() takes descriptors below FD_SETSIZE only
_PR_SET_TIMERSLACK = 29


def cut_timer_slack() -> None:
    """Let this thread's timed waits end within ~1 us of their deadline instead of 50 us (Linux)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux/glibc: waits are just less punctual, and the lateness figures say so


class OpenLoopWorker(EpollWorker):
    """``rate`` messages a second over this worker's live connections, in turn."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lateness = LatencyRecorder()

    def drive(self, start: int) -> None:
        cut_timer_slack()
        by_fd, receive, late = self.by_fd, self.receive, self.lateness.record
        wait = self.waiter()
        interval = 1e9 / self.rate
        sent = 0
        due = start
        live, failures = [conn for conn in self.conns if conn.sock is not None], self.failures
        while self.running:
            now = clock()
            while due <= now:
                if failures != self.failures:  # rebuilt only when one has gone: it is O(connections)
                    live, failures = [conn for conn in self.conns if conn.sock is not None], self.failures
                if not live:
                    break
                conn = live[sent % len(live)]
                conn.sent_at.append(due)
                conn.owed += self.size
                late(clock() - due)
                self.flush(conn)
                sent += 1
                due = start + int(sent * interval)  # `now` stays put: a client that falls behind still reads
            for fd, mask in wait(min(due - now, self.next_tick - now)):
                conn = by_fd[fd]
                if mask & EPOLLOUT:
                    self.flush(conn)
                if mask != EPOLLOUT and conn.sock is not None:
                    receive(conn)
            if self.completed >= self.stop_after or clock() >= self.next_tick:
                self.housekeeping()

    def waiter(self):
        """``wait(ns)``: the epoll events ready within ``ns`` nanoseconds, returned as soon as there are any."""
        poll, epfd = self.epoll.poll, self.epoll.fileno()
        sleep = (lambda seconds: select.select((epfd,), (), (), seconds)) if epfd < SELECT_LIMIT else None
        tick = int(TICK_S * 1e9)

        def wait(ns: int) -> list:
            ns = min(ns, tick)
            if ns > SPIN_NS:
                if ns >= 2_000_000 or sleep is None:  # epoll's whole milliseconds, rounded down
                    events = poll((ns - SPIN_NS) // 1_000_000 / 1000)
                else:
                    sleep((ns - SPIN_NS) / 1e9)  # returns early if the epoll set has an event
                    events = poll(0)
                if events:
                    return events
            return poll(0)  # the final stretch: the caller comes straight back, which is the spin

        return wait

    def open_window(self, now: int) -> None:
        super().open_window(now)
        self.lateness.clear()
