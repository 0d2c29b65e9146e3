"""Counters every backend keeps under the same names, in one process and across many.

Within a process, a connection counts its own bytes and messages in plain
integers on its :class:`ConnectionStats` (no lock on the per-message path); the
process-wide :class:`Stats` adds the live connections to the totals of the
closed ones when someone asks for a snapshot.

Across processes (``fork``'s children, ``--workers``), each process publishes
its snapshot into its own row of a :class:`SlotTable`, an anonymous shared
``mmap`` inherited across ``fork()``. Every row has one writer, so no lock is
needed; the process that reports (the fork parent, the supervisor) sums rows.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from dataclasses import dataclass

ERROR_KINDS = (
    "reset",
    "broken_pipe",
    "aborted",
    "timeout",
    "not_connected",
    "unreachable",
    "server",
    "tls",
    "tls_timeout",
    "proxy_header",
    "header_timeout",
    "proxy_untrusted",
    "accept_emfile",
    "accept_enfile",
    "accept_enobufs",
    "accept_enomem",
    "thread_start",
)
FAULT_KINDS = ("delayed", "reset", "trickled", "truncated")
COUNTERS = (
    "accepted",
    "closed",
    "idle_closed",
    "rejected",
    "bytes_in",
    "bytes_out",
    "messages",
    "proxied_v1",
    "proxied_v2",
) + tuple(f"fault_{kind}" for kind in FAULT_KINDS)
FIELDS = COUNTERS + ("active",) + tuple(f"error_{kind}" for kind in ERROR_KINDS)


@dataclass(slots=True, eq=False)  # hashed by identity: a key of Stats._live
class ConnectionStats:
    bytes_in: int = 0
    bytes_out: int = 0
    messages: int = 0


def empty() -> dict:
    return dict.fromkeys(FIELDS, 0)


def add(total: dict, more: dict) -> dict:
    for name in FIELDS:
        total[name] += more[name]
    return total


class Stats:
    """The counters of one process."""

    def __init__(self) -> None:
        self._totals = empty()  # closed connections, and everything that is not per connection
        # Counters of the open connections, as dict keys (values unused). Every idle connection
        # pays for its entry: keyed by the object, not by id() (an int more), and a dict, not a
        # set, whose table grows 4x at a time (~105 bytes an entry at 5,000 against ~30).
        self._live: dict[ConnectionStats, None] = {}
        self._lock = threading.Lock()  # guards open/close bookkeeping, never the per-message path

    def opened(self, conn=None) -> ConnectionStats:
        """Start counting a connection: ``conn`` is anything with ``bytes_in``, ``bytes_out`` and
        ``messages`` attributes (a protocol can be its own counters), or a new :class:`ConnectionStats`."""
        conn = ConnectionStats() if conn is None else conn
        with self._lock:
            self._totals["accepted"] += 1
            self._live[conn] = None
        return conn

    def closed_connection(self, conn: ConnectionStats, *, idle: bool = False, error: str | None = None) -> None:
        with self._lock:
            if conn not in self._live:
                return  # already counted
            del self._live[conn]
            totals = self._totals
            totals["closed"] += 1
            totals["idle_closed"] += idle
            if error:
                totals[f"error_{error}"] += 1
            totals["bytes_in"] += conn.bytes_in
            totals["bytes_out"] += conn.bytes_out
            totals["messages"] += conn.messages

    def count(self, name: str, n: int = 1) -> None:
        """Bump a counter that belongs to no connection (``rejected``, ``error_accept_emfile``...)."""
        with self._lock:
            self._totals[name] += n

    def error(self, kind: str) -> None:
        self.count(f"error_{kind}")

    def absorb(self, values: dict) -> None:
        """Fold another process's final counters into these (a reaped fork child's)."""
        with self._lock:
            add(self._totals, {**values, "active": 0})

    def snapshot(self) -> dict:
        """Every field of :data:`FIELDS`, live connections included."""
        with self._lock:
            result = dict(self._totals)
            live = list(self._live)
        result["active"] = len(live)
        for conn in live:
            result["bytes_in"] += conn.bytes_in
            result["bytes_out"] += conn.bytes_out
            result["messages"] += conn.messages
        return result


def describe_totals(totals: dict) -> str:
    """The stop line's figures as a person reads them: ``1 connection, 12,345 bytes in, ...``."""
    accepted = totals["accepted"]
    return (
        f"{accepted:,} connection{'' if accepted == 1 else 's'}, {totals['bytes_in']:,} bytes in, "
        f"{totals['bytes_out']:,} bytes out"
    )


def errors_of(snapshot: dict) -> dict[str, int]:
    return {kind: snapshot[f"error_{kind}"] for kind in ERROR_KINDS if snapshot[f"error_{kind}"]}


class SlotTable:
    """Rows of counters in shared memory, one row per process that reports into it.

    Created before the ``fork()`` that makes the writers, so parent and children
    map the same pages. Values are 64-bit and aligned, so a reader never sees a
    torn number; a row read while its writer updates it may mix old and new
    fields, which is fine for counters read every few seconds.
    """

    _ROW = struct.Struct(f"={len(FIELDS)}q")

    def __init__(self, rows: int, fd: int = -1) -> None:
        """``fd``: a file (a ``memfd``) to map instead of anonymous memory, for a writer that is not a fork
        of the creator's (the fork server, started with ``exec``; a subinterpreter, which inherits
        descriptors but no mappings) and maps the same pages by descriptor."""
        self.rows = rows
        self.fd = fd
        size = max(1, rows) * self._ROW.size
        if fd >= 0 and os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        self._memory = mmap.mmap(fd, size)  # MAP_SHARED, anonymous when fd is -1

    @classmethod
    def in_memory_file(cls, rows: int) -> SlotTable:
        """A table backed by a new memfd (see ``fd`` above)."""
        return cls(rows, os.memfd_create("echoserver-counters", os.MFD_CLOEXEC))

    def write(self, row: int, values: dict) -> None:
        self._ROW.pack_into(self._memory, row * self._ROW.size, *(values[name] for name in FIELDS))

    def read(self, row: int) -> dict:
        return dict(zip(FIELDS, self._ROW.unpack_from(self._memory, row * self._ROW.size)))

    def take(self, row: int) -> dict:
        """Read a row whose writer is gone, and zero it for the next one."""
        values = self.read(row)
        self.write(row, empty())
        return values

    def total(self, rows: list[int] | range | None = None) -> dict:
        result = empty()
        for row in range(self.rows) if rows is None else rows:
            add(result, self.read(row))
        return result


class Publisher:
    """Writes a process's snapshot into its row every ``interval`` seconds, and once more at the end."""

    def __init__(self, snapshot, table: SlotTable, row: int, interval: float = 0.5) -> None:
        self.snapshot = snapshot
        self.table = table
        self.row = row
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="echo-stats-publisher", daemon=True)

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.publish()

    def publish(self) -> None:
        self.table.write(self.row, self.snapshot())

    def stop(self) -> None:
        self._stop.set()
        self.publish()
