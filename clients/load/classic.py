"""The tutorial client: one blocking thread per connection (``--engine blocking``).

Kept because it teaches something: it is what most people write first, and
against the fastest backends it measures its own overhead (a GIL handover and
a thread wake-up per message) rather than the server's. Compare
``echo-load --engine blocking`` with the default engine to see how much.
It reports exactly like :class:`~echoclients.load.closedloop.ClosedLoopWorker`.
"""

from __future__ import annotations

import socket
from collections import Counter

from echoclients.load.connection import clock, error_kind
from echoclients.load.opening import CONNECTED
from echoclients.load.payload import Stream
from echoclients.load.results import LatencyRecorder


class BlockingWorker:
    """One connection, one thread: ``sendall``, then ``recv`` until the echo is whole."""

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
        ((self.index, stream),) = streams
        self.source = (sources[self.index % len(sources)], 0) if sources else None
        self.opening = opening  # an Opening (TLS, PROXY header, banner), or None
        self.sock: socket.socket | None = None
        self.spec, self.size = spec, spec.size
        self.family, self.sockaddr = address
        self.sent, self.expected = memoryview(stream.sent), stream.expected
        self.low, self.period = stream.base, stream.period
        self.schedule, self.progress, self.slot = schedule, progress, slot
        self.requests, self.probe = requests, probe
        self.latency, self.connect_latency = LatencyRecorder(), LatencyRecorder()
        self.errors: Counter = Counter()
        self.mismatches = self.completed = self.baseline_total = 0
        self.window: list[int] = []

    def run(self) -> None:
        sock = self.connect()
        self.schedule.wait()
        if self.probe:  # every connection of the run is open, nothing sent yet (as in EpollWorker.run)
            self.probe("connected")
        try:
            if sock is not None:
                self.loop(sock)
        except OSError as exc:
            self.errors[error_kind(exc)] += 1
        except BaseException:
            self.schedule.abort()
            raise
        finally:
            now = clock()
            self.schedule.wait()  # every window closed before any connection does
            if sock is not None:
                sock.close()
            self.window = (self.window + [now, now])[:2]
            self.latency.fold()
            self.connect_latency.fold()

    def connect(self) -> socket.socket | None:
        started = clock()
        try:
            self.sock = socket.create_connection(
                self.sockaddr[:2], timeout=self.spec.connect_timeout, source_address=self.source
            )
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.opening is None:
                self.connect_latency.record(clock() - started)
            else:
                for step in self.opening.steps(self):  # a blocking socket: it never waits, only marks
                    if step == CONNECTED:
                        self.connect_latency.record(clock() - started)
        except OSError as exc:
            self.errors[error_kind(exc)] += 1
            if self.sock is not None:
                self.sock.close()
            return None
        self.sock.settimeout(self.spec.timeout)
        return self.sock

    def loop(self, sock: socket.socket) -> None:
        size, offset, record = self.size, 0, self.latency.record
        now = clock()
        measure_at = now + int(self.spec.warmup_seconds * 1e9)
        stop_at = measure_at + int(self.spec.run_seconds * 1e9)
        stop_after = float("inf")
        # `while True` and a break, not `while <condition>`: a loop that each thread enters once
        # and that ends in a conditional jump back is never specialised by CPython 3.11 unless
        # eight threads have entered it (docs/overhead.md, the fork loop).
        while True:
            if now >= stop_at or self.completed >= stop_after:
                break
            if not self.window and now >= measure_at:
                stop_after = self.open_window(now)
            start = self.low + offset
            sent_at = clock()
            sock.sendall(self.sent[start : start + size])
            reply = self.read(sock, size)
            now = clock()
            if len(reply) < size:
                self.errors["short_read" if reply else "closed_by_server"] += 1
                return
            if not self.expected.startswith(reply, start):
                self.mismatches += 1
            record(now - sent_at)
            offset = (offset + size) % self.period
            self.completed += 1
            if self.progress is not None and not self.completed & 255:
                self.progress[self.slot] = self.completed - self.baseline_total
        if self.window:
            self.window.append(now)
            if self.probe:
                self.probe("end")

    @staticmethod
    def read(sock: socket.socket, size: int) -> bytes:
        chunks, got = [], 0
        while got < size:
            chunk = sock.recv(size - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def open_window(self, now: int) -> float:
        self.latency.clear()
        self.baseline_total = self.completed
        self.window = [now]
        if self.probe:
            self.probe("start")
        return self.completed + self.requests if self.spec.requests else float("inf")

    def per_connection(self) -> list[int]:
        return [self.window_messages]

    @property
    def window_messages(self) -> int:
        return self.completed - self.baseline_total if self.window else 0
