"""Counters every backend keeps under the same names.

A connection counts its own bytes and messages in plain integers on its
:class:`ConnectionStats` (no lock on the per-message path); the server-wide
:class:`Stats` adds the live connections to the totals of the closed ones when
someone asks for a snapshot. The lock guards only open/close bookkeeping.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ConnectionStats:
    bytes_in: int = 0
    bytes_out: int = 0
    messages: int = 0


@dataclass
class Stats:
    accepted: int = 0
    closed: int = 0
    idle_closed: int = 0
    rejected: int = 0
    errors: Counter = field(default_factory=Counter)
    _closed_totals: ConnectionStats = field(default_factory=ConnectionStats)
    _live: dict = field(default_factory=dict)  # id -> ConnectionStats of open connections
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def opened(self) -> ConnectionStats:
        conn = ConnectionStats()
        with self._lock:
            self.accepted += 1
            self._live[id(conn)] = conn
        return conn

    def closed_connection(self, conn: ConnectionStats, *, idle: bool = False, error: str | None = None) -> None:
        with self._lock:
            if self._live.pop(id(conn), None) is None:
                return  # already counted
            self.closed += 1
            if idle:
                self.idle_closed += 1
            if error:
                self.errors[error] += 1
            totals = self._closed_totals
            totals.bytes_in += conn.bytes_in
            totals.bytes_out += conn.bytes_out
            totals.messages += conn.messages

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    @property
    def active(self) -> int:
        return len(self._live)

    def snapshot(self) -> dict:
        with self._lock:
            live = list(self._live.values())
            totals = ConnectionStats(**vars(self._closed_totals))
            result = {
                "accepted": self.accepted,
                "active": len(live),
                "closed": self.closed,
                "idle_closed": self.idle_closed,
                "rejected": self.rejected,
                "errors": dict(self.errors),
            }
        for conn in live:
            totals.bytes_in += conn.bytes_in
            totals.bytes_out += conn.bytes_out
            totals.messages += conn.messages
        result.update(vars(totals))
        return result
