"""The live progress line on a terminal: messages/s so far and errors, rewritten in place."""

from __future__ import annotations

import sys
import time


class ProgressLine:
    """Fed every half second with the workers' counters; draws one ``\\r`` line on stderr."""

    def __init__(self, spec, stream=None) -> None:
        self.spec = spec
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last = (self.started, 0)
        self.width = 0  # of the line on screen: a shorter one must blank the rest of it

    def update(self, progress: list, errors: list) -> None:
        if any(count < 0 for count in progress):  # still connecting: the slots count connections, negated
            ready = -sum(count for count in progress if count < 0)
            self.stream.write(f"\rconnecting {ready:>9,}/{self.spec.clients:,}  errors {sum(errors):,}   ")
            self.stream.flush()
            return
        now, done = time.monotonic(), sum(progress)
        then, before = self.last
        rate = (done - before) / (now - then) if now > then else 0.0
        self.last = (now, done)
        phase = "warmup " if now - self.started < self.spec.warmup_seconds else ""
        self.draw(f"{phase}{now - self.started:6.1f} s  {done:>12,} msgs  {rate:>11,.0f} msg/s  errors {sum(errors):,}")

    def draw(self, line: str) -> None:
        """Rewrite the line in place, padding over whatever a longer previous line left."""
        self.stream.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r" + " " * self.width + "\r")
        self.width = 0
        self.stream.flush()
