"""What the clients send, and what they expect back.

Every connection sends an endless stream cut into ``size``-byte messages: a
``period`` of bytes taken from a shared pool at a connection-specific offset,
repeated. Different connections send different bytes, so a server that crossed
two clients' streams, or replayed a stale buffer, shows up as a mismatch.

The expected reply is computed with the server's own sans-IO handler
(:mod:`echoserver.sansio.handlers`), not re-implemented here: ``--expect upper`` is
whatever ``UpperHandler.transform`` does.

The pool is stored twice over (``period`` bytes of slack past the last
offset), so any slice of up to ``period`` bytes starting inside a period is
contiguous: sends and verification never have to wrap around.
"""

from __future__ import annotations

import os
import random
import string
from dataclasses import dataclass

from echoserver.config import HEAVY_MARKER, ServerConfig
from echoserver.sansio.handlers import make_handler

PAYLOADS = ("random", "ascii", "marked")
EXPECTS = ("echo", "upper")
_MIN_PERIOD = 64 * 1024
_MAX_POOL = 16 * 1024 * 1024
_OFFSETS = 61  # distinct starting offsets; connections beyond that share one


@dataclass(frozen=True)
class Stream:
    """One connection's view of the pool: send ``sent[base:]``, expect ``expected[base:]``."""

    sent: bytes
    expected: bytes
    base: int
    period: int


class PayloadPool:
    def __init__(self, size: int, payload: str = "random", expect: str = "echo", seed: int | None = None) -> None:
        if payload not in PAYLOADS:
            raise ValueError(f"payload must be one of {', '.join(PAYLOADS)}")
        if expect not in EXPECTS:
            raise ValueError(f"expect must be one of {', '.join(EXPECTS)}")
        self.size = size
        messages_per_period = max(4, -(-_MIN_PERIOD // size))
        self.period = messages_per_period * size
        self.offsets = max(1, min(_OFFSETS, (_MAX_POOL - 2 * self.period) // size))
        length = self.offsets * size + 2 * self.period
        self.sent = _random_bytes(length, seed) if payload == "random" else _ascii_lines(length, size, seed)
        if payload == "marked":  # every message asks for the server's --cpu-work (--cpu-work-on marked)
            sent = bytearray(self.sent)
            sent[::size] = HEAVY_MARKER * len(range(0, length, size))
            self.sent = bytes(sent)
        handler = make_handler(ServerConfig(handler=expect))
        self.expected = handler.transform(self.sent)

    def stream(self, index: int) -> Stream:
        base = (index % self.offsets) * self.size
        return Stream(self.sent, self.expected, base, self.period)


def _random_bytes(length: int, seed: int | None) -> bytes:
    if seed is None:
        return os.urandom(length)
    return random.Random(seed).randbytes(length)


def _ascii_lines(length: int, size: int, seed: int | None) -> bytes:
    """Letters and digits, each message ending in a newline (so ``--handler line`` echoes it whole)."""
    rng = random.Random(seed)
    alphabet = (string.ascii_letters + string.digits).encode()
    body = bytearray(rng.choices(alphabet, k=length))
    if size > 1:
        body[size - 1 :: size] = b"\n" * len(range(size - 1, length, size))
    return bytes(body)
