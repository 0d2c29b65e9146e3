"""What a connection may know about the server that runs it, and nothing more.

Modelled on uvicorn's ``ServerState``: the backend builds one
:class:`ServerState` and passes it down to every connection loop, which reads
its settings, counters, TLS context and banner from it and reports its own
start and end through :meth:`ServerState.opened` and :meth:`ServerState.closed`.
A loop never sees the backend object, so the loops sit below the backends and
import nothing from them.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from echoserver.config import ServerConfig
from echoserver.observability.stats import Stats
from echoserver.sansio.proxy_protocol import TrustedSources

if TYPE_CHECKING:  # the blocking backends never load asyncio (gevent's processes, fork's children)
    import asyncio


def _nothing() -> None:
    pass


def poll_socket(sock: Any, writable: bool, timeout: float) -> bool:
    """Wait until ``sock`` is readable (or writable); False on timeout.

    ``poll``, not ``select``: a connection's descriptor may be above 1023.
    """
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT if writable else select.POLLIN)
    return bool(poller.poll(timeout * 1000))


class ServerState:
    """Settings, counters and the set of live connections, shared by one backend and its connections.

    ``stopping`` is set by the backend when it starts draining; a connection
    that starts after that drains at once. ``sleep`` and ``wait_socket`` are the
    backend's own ways to wait (gevent's cooperative ones on gevent); ``loop``
    and ``tasks`` exist on the event-loop backends only.
    """

    def __init__(
        self,
        backend: str,
        config: ServerConfig,
        stats: Stats,
        tls,
        banner: bytes,
        *,
        sleep: Callable[[float], None] = time.sleep,
        wait_socket: Callable[[Any, bool, float], bool] = poll_socket,
        on_closed: Callable[[], None] = _nothing,
    ) -> None:
        self.backend = backend
        self.config = config
        self.stats = stats
        self.tls = tls
        self.banner = banner
        self.trusted = TrustedSources(config.proxy_trusted)
        self.stopping = False
        # A fork child publishes its counters only when asked and as it ends: its plain echo may
        # keep them in locals between messages (BlockingConnection._echo_counting_on_exit).
        self.counts_on_exit = False
        self.sleep = sleep
        self.wait_socket = wait_socket
        self.loop: asyncio.AbstractEventLoop | None = None
        # Every task started on a connection's behalf (set-up, paced replies): the
        # backend cancels and awaits whatever is left when it stops.
        self.tasks: set[asyncio.Task] = set()
        # A dict used as a set (values unused): at thousands of connections a set's table
        # costs up to ~105 bytes an entry, a dict's ~30 (see Stats._live).
        self.connections: dict[object, None] = {}
        self._lock = threading.Lock()
        self._on_closed = on_closed

    def opened(self, connection: object) -> None:
        with self._lock:
            self.connections[connection] = None

    def closed(self, connection: object) -> None:
        """A connection is gone: forget it, and let the backend free its slot."""
        with self._lock:
            self.connections.pop(connection, None)
        self._on_closed()

    def live(self) -> list:
        with self._lock:
            return list(self.connections)

    def __len__(self) -> int:
        return len(self.connections)

    def start_task(self, coroutine) -> asyncio.Task:
        """A task the backend will join at shutdown (event-loop backends only)."""
        assert self.loop is not None, "an event-loop backend sets the loop before it accepts"
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
