"""``thread``: one OS thread per connection, the classic ``socketserver.ThreadingMixIn`` shape.

Each connection's blocking ``recv``/``sendall`` releases the GIL while it waits,
so IO overlaps; Python code (``--cpu-work``) still runs one thread at a time.
Memory grows with every connection: each thread has its own stack.
"""

from __future__ import annotations

import itertools
import logging
import threading

from echoserver.backends.blocking import BlockingBackend
from echoserver.backends.stream import BlockingConnection, reset_connection

log = logging.getLogger("echoserver")


class ThreadPerConnectionBackend(BlockingBackend):
    name = "thread"
    _ids = itertools.count(1)
    _warned_threads = False

    def dispatch(self, connection: BlockingConnection) -> None:
        # Daemon threads: a connection that outlives a forced shutdown must not
        # keep the process alive; the drain has already joined the well-behaved ones.
        thread = threading.Thread(
            target=self.serve, args=(connection,), name=f"echo-conn-{next(self._ids)}", daemon=True
        )
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": this process, or the whole system, is out
            self.refuse(connection, exc)

    def refuse(self, connection: BlockingConnection, exc: RuntimeError) -> None:
        """No thread for this connection: reset it and count it, rather than let the accept loop die."""
        self.stats.error("thread_start")
        self.state.closed(connection)
        reset_connection(connection.sock)
        connection.sock.close()
        if not self._warned_threads:
            self._warned_threads = True
            log.warning(
                "cannot start a thread for a new connection (%s) with %d threads in this process: "
                "refusing new connections until some end; the system caps threads at kernel.pid_max "
                "and kernel.threads-max (an event-loop backend holds far more connections)",
                exc,
                threading.active_count(),
            )
