"""The closed loop's compiled fast path (``_hotloop.c``), and the table it shares with Python.

The C loop advances the connections whose row in :class:`ConnectionTable` is
marked fast and hands back every event it does not handle; the table is the
truth for those rows while the C loop runs, the :class:`Connection` objects are
the truth for the rest. :meth:`ConnectionTable.pull` and
:meth:`ConnectionTable.push` move a connection between the two, so the Python
general path never sees a stale ``rpos`` or ``sent_at``.
"""

from __future__ import annotations

import os
from array import array
from types import ModuleType

from echoclients.load.connection import Connection

_hotloop: ModuleType | None
try:
    from echoclients.load import _hotloop
except ImportError:  # built without a C compiler: the Python loop runs instead
    _hotloop = None

HOT_LOOPS = ("auto", "compiled", "python")
# What a deferred event asks for (the D_* constants of _hotloop.c).
DEFER_EVENT, DEFER_READ, DEFER_SENT, DEFER_RECV_ERROR, DEFER_SEND_ERROR = range(5)
FD, RPOS, SPOS, HIGH, PERIOD, SENT_AT, MESSAGES, STREAM, FAST = range(9)
STRIDE = 9


ENVIRONMENT = "ECHO_LOAD_HOT_LOOP"  # "python": the compiled loop is off, whatever --hot-loop says


def environment_error() -> str | None:
    """What is wrong with ``ECHO_LOAD_HOT_LOOP``, if anything: a typo must not pass for "unset"."""
    value = os.environ.get(ENVIRONMENT, "")
    return None if value in ("", "python") else f"{ENVIRONMENT}={value!r}: the only value it takes is python"


def available() -> bool:
    """The compiled loop was built, and ``ECHO_LOAD_HOT_LOOP=python`` does not turn it off."""
    return _hotloop is not None and os.environ.get(ENVIRONMENT, "") != "python"


def applies(spec) -> bool:
    """The compiled loop handles a closed loop with one message in flight over plain sockets."""
    return spec.engine == "epoll" and not spec.rate and spec.pipeline == 1 and not spec.tls


def chosen(spec) -> str:
    """``compiled`` or ``python``: which loop a run of ``spec`` takes (reported as ``hot_loop``)."""
    if spec.hot_loop == "python" or not applies(spec):
        return "python"
    return "compiled" if spec.hot_loop == "compiled" or available() else "python"


class ConnectionTable:
    """One int64 row per connection, in the columns ``_hotloop.COLUMNS`` names."""

    def __init__(self, conns: list[Connection]) -> None:
        assert _hotloop is not None and _hotloop.COLUMNS[STREAM] == "stream" and len(_hotloop.COLUMNS) == STRIDE
        self.conns = conns
        self.rows = array("q", bytes(8 * STRIDE * len(conns)))
        self.row_of = {id(conn): n * STRIDE for n, conn in enumerate(conns)}
        index: dict[tuple[int, int], int] = {}
        self.stream_of: list[int] = []
        self.streams: list[tuple[bytes, memoryview]] = []
        for conn in conns:
            key = (id(conn.expected), id(conn.out))
            if key not in index:
                index[key] = len(self.streams)
                self.streams.append((conn.expected, conn.out))
            self.stream_of.append(index[key])

    def push(self, conn: Connection) -> None:
        """Hand ``conn`` to the C loop if it is in the one state that loop handles, else keep it here."""
        at = self.row_of[id(conn)]
        sock = conn.sock
        if (
            sock is None
            or conn.partial
            or conn.owed
            or conn.corrupt
            or conn.writing
            or conn.opening is not None
            or len(conn.sent_at) != 1
        ):
            self.rows[at + FAST] = 0
            return
        self.rows[at : at + STRIDE] = array(
            "q",
            (
                sock.fileno(),
                conn.rpos,
                conn.spos,
                conn.high,
                conn.period,
                conn.sent_at[0],
                conn.messages,
                self.stream_of[at // STRIDE],
                1,
            ),
        )

    def pull(self, conn: Connection) -> None:
        """Take ``conn`` back from the C loop: its row's positions, count and send time."""
        at = self.row_of[id(conn)]
        rows = self.rows
        if rows[at + FAST]:
            conn.rpos, conn.spos, conn.messages = rows[at + RPOS], rows[at + SPOS], rows[at + MESSAGES]
            conn.sent_at[0] = rows[at + SENT_AT]
            rows[at + FAST] = 0

    def pull_all(self) -> None:
        for conn in self.conns:
            self.pull(conn)

    def push_all(self) -> None:
        for conn in self.conns:
            self.push(conn)


def closed_loop(epfd: int, table: ConnectionTable, latencies: array, size: int, deadline: int, limit: int):
    """One stretch of the compiled loop: see ``_hotloop.closed_loop``."""
    assert _hotloop is not None
    return _hotloop.closed_loop(epfd, table.rows, table.streams, latencies, size, deadline, limit)
