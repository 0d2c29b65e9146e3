"""Pacing: what happens between reading a message and writing its reply, decided sans-IO.

Simulated IO (``--io-delay``) and injected faults (``--delay``, ``--reset-probability``,
``--trickle``, ``--max-bytes-per-connection``) are decisions, not IO: this object
says how long to wait, whether to reset, how much to send and in what pieces;
each backend then waits and writes its own way. A connection with none of them
configured never creates one, and its replies go straight back.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from echoserver.config import ServerConfig

TRICKLE_STEPS_PER_S = 20  # a trickled reply is written in pieces of rate/20 bytes, 50 ms apart


class Pacing:
    __slots__ = ("io_delay", "delay", "jitter", "reset_probability", "trickle", "budget", "random")

    def __init__(self, config: ServerConfig, rng: random.Random | None = None) -> None:
        self.io_delay = config.io_delay_s
        self.delay, self.jitter = config.delay[0] / 1000.0, config.delay[1] / 1000.0
        self.reset_probability = config.reset_probability
        self.trickle = config.trickle
        self.budget = config.max_bytes_per_connection or None
        self.random = rng or random.Random()

    def wait_before_reply(self, units: int) -> float:
        """Seconds to wait before replying to ``units`` messages: simulated IO, then the injected delay."""
        wait = self.io_delay * units
        if self.delay and units:
            wait += max(0.0, self.delay + self.random.uniform(-self.jitter, self.jitter))
        return wait

    def reset_now(self) -> bool:
        return bool(self.reset_probability) and self.random.random() < self.reset_probability

    def allow(self, reply: bytes) -> tuple[bytes, bool]:
        """The part of ``reply`` the byte budget allows, and whether the budget is now spent."""
        if self.budget is None:
            return reply, False
        allowed = reply[: self.budget]
        self.budget -= len(allowed)
        return allowed, self.budget == 0

    def pieces(self, reply: bytes) -> Iterator[tuple[bytes | memoryview, float]]:
        """``(piece, pause after it)``: the whole reply at once, or trickled at ``--trickle`` bytes/s."""
        if not self.trickle:
            yield reply, 0.0
            return
        step = max(1, self.trickle // TRICKLE_STEPS_PER_S)
        view = memoryview(reply)
        for offset in range(0, len(reply), step):
            piece = view[offset : offset + step]
            yield piece, len(piece) / self.trickle


def describe(config: ServerConfig) -> str:
    """One line for the log: which faults are on."""
    parts = []
    if config.delay[0]:
        parts.append(f"delay {config.delay[0]:g}ms" + (f"+/-{config.delay[1]:g}ms" if config.delay[1] else ""))
    if config.reset_probability:
        parts.append(f"reset probability {config.reset_probability:g}")
    if config.trickle:
        parts.append(f"trickle {config.trickle} B/s")
    if config.max_bytes_per_connection:
        parts.append(f"close after {config.max_bytes_per_connection} bytes")
    return ", ".join(parts)
