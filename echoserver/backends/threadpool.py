"""``threadpool``: connections queued to a fixed ``concurrent.futures.ThreadPoolExecutor``.

At most ``--pool-size`` connections are served at once; the rest wait in the
executor's queue (accepted, but not yet read) until a worker is free. That is
the trade a pool makes: bounded threads and memory, at the price of queueing
the clients beyond it, which ``echo-load`` shows as starved connections.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from echoserver.backends.blocking import BlockingBackend
from echoserver.backends.stream import BlockingConnection


class ThreadPoolBackend(BlockingBackend):
    name = "threadpool"

    def run(self, listeners: list[socket.socket], ready: Callable[[], None], *, handle_signals: bool = False) -> None:
        self.pool = ThreadPoolExecutor(max_workers=self.config.pool_size, thread_name_prefix="echo-pool")
        try:
            super().run(listeners, ready, handle_signals=handle_signals)
        finally:
            # The drain has already ended or cut every connection, queued ones
            # included, so nothing left in the pool can block this.
            self.pool.shutdown(wait=True, cancel_futures=True)

    def dispatch(self, connection: BlockingConnection) -> None:
        self.pool.submit(self.serve, connection)
