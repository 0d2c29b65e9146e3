"""``gevent``: a greenlet per connection on gevent's libev/libuv loop.

The connection loop is the same blocking code the thread backend runs; gevent
makes its ``recv`` and ``sendall`` switch greenlets instead of blocking the OS
thread. The CLI monkey-patches the standard library (the registry's ``prepare`` hook)
before anything else is imported, so that any blocking call made on a
connection's behalf cooperates too. The backend itself uses gevent's own socket,
select and sleep explicitly, so it also works embedded in an unpatched process.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import gevent
import gevent.pool
import gevent.select
import gevent.socket

from echoserver.backends.base import SHUTDOWN_SIGNALS
from echoserver.backends.blocking import BlockingBackend
from echoserver.backends.stream import BlockingConnection


class GeventBackend(BlockingBackend):
    name = "gevent"

    def run(self, listeners: list[socket.socket], ready: Callable[[], None], *, handle_signals: bool = False) -> None:
        self.group = gevent.pool.Group()
        cooperative = [
            sock
            if isinstance(sock, gevent.socket.socket)
            else gevent.socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            for sock in listeners
        ]
        super().run(cooperative, ready, handle_signals=handle_signals)

    @classmethod
    def after_fork(cls) -> None:
        # gevent's own fork does this; the supervisor uses the plain one (a no-op
        # unless a hub already existed in the parent).
        gevent.reinit()

    @classmethod
    def original(cls, module: str, name: str):
        import gevent.monkey

        return gevent.monkey.get_original(module, name)

    def ssl_module(self):
        import gevent.ssl

        return gevent.ssl

    def install_signal_handlers(self) -> None:
        # A plain signal.signal handler would run only when the hub next wakes
        # for some other reason; gevent's own handler wakes the hub itself.
        for signum in SHUTDOWN_SIGNALS:
            gevent.signal_handler(signum, self.on_shutdown_signal, signum)

    def dispatch(self, connection: BlockingConnection) -> None:
        self.group.spawn(self.serve, connection)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def wait_readable(self, socks: list, timeout: float | None) -> list:
        return gevent.select.select(socks, [], [], timeout)[0]

    def wait_socket(self, sock: Any, writable: bool, timeout: float) -> bool:
        wait = gevent.socket.wait_write if writable else gevent.socket.wait_read
        try:
            wait(sock.fileno(), timeout)
        except TimeoutError:
            return False
        return True
