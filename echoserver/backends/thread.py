"""``thread``: one OS thread per connection, the classic ``socketserver.ThreadingMixIn`` shape.

Each connection's blocking ``recv``/``sendall`` releases the GIL while it waits,
so IO overlaps; Python code (``--cpu-work``) still runs one thread at a time.
Memory grows with every connection: each thread has its own stack.
"""

from __future__ import annotations

import itertools
import threading

from echoserver.backends.blocking import BlockingBackend
from echoserver.backends.stream import BlockingConnection


class ThreadPerConnectionBackend(BlockingBackend):
    name = "thread"
    _ids = itertools.count(1)

    def dispatch(self, connection: BlockingConnection) -> None:
        # Daemon threads: a connection that outlives a forced shutdown must not
        # keep the process alive; the drain has already joined the well-behaved ones.
        thread = threading.Thread(target=self.serve, args=(connection,),
                                  name=f"echo-conn-{next(self._ids)}", daemon=True)
        thread.start()
