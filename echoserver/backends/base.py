"""What every backend is: something that serves connections from a bound listener until told to stop.

The server core owns the listening socket, the ready line and the process; a
backend owns who runs each connection (a thread, a pool worker, a child process,
a greenlet, a coroutine) and how its own kind of wait is interrupted.
"""

from __future__ import annotations

import errno
import importlib
import logging
import signal
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from echoserver.backends.state import ServerState
from echoserver.config import ServerConfig
from echoserver.net.limits import open_file_limit
from echoserver.net.tls import server_context
from echoserver.observability.stats import Stats

log = logging.getLogger("echoserver")

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# accept() errors that mean "out of descriptors or memory": wait, do not spin.
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def banner_bytes(text: str, backend: str) -> bytes:
    """``--banner`` with ``{hostname}`` and ``{backend}`` filled in, as one line; b"" when off."""
    if not text:
        return b""
    line = text.replace("{hostname}", socket.gethostname()).replace("{backend}", backend)
    return (line if line.endswith("\n") else line + "\n").encode()


class Backend(ABC):
    name: ClassVar[str]

    def __init__(self, config: ServerConfig, stats: Stats | None = None) -> None:
        self.config = config
        self.tls = server_context(config, self.ssl_module())
        self.banner = banner_bytes(config.banner, self.name)
        # All that a connection loop sees of its backend (see echoserver.backends.state).
        self.state = self.new_state(stats if stats is not None else Stats())
        self.forcing = False  # close whatever is still connected, now
        self._starved = False  # accept() is failing for lack of descriptors

    def new_state(self, stats: Stats) -> ServerState:
        """The narrow view the connections get; a backend adds its own ways to wait."""
        return ServerState(self.name, self.config, stats, self.tls, self.banner)

    @property
    def stopping(self) -> bool:
        """Stop accepting, drain what is connected; connections read it from the state."""
        return self.state.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self.state.stopping = value

    @property
    def stats(self) -> Stats:
        return self.state.stats

    @stats.setter
    def stats(self, value: Stats) -> None:
        self.state.stats = value  # a fork child starts afresh

    @abstractmethod
    def run(self, listeners: list[socket.socket], ready: Callable[[], None], *, handle_signals: bool = False) -> None:
        """Serve every listener until :meth:`stop`, then drain; returns when every connection is gone.

        Closing the listeners is the backend's job (stop accepting at once);
        removing a Unix socket's file is the owner's, once the server is gone.
        """

    def stop(self, *, force: bool = False) -> None:
        """Ask the server to stop; safe from a signal handler and from any thread.

        The first call stops accepting and lets connected clients finish for up to
        ``--grace`` seconds; ``force`` (or a second call) closes what remains now.
        """
        if self.stopping:
            force = True
        self.stopping = True
        self.forcing = self.forcing or force
        self.wake()

    @classmethod  # noqa: B027 - a hook that most backends leave empty
    def after_fork(cls) -> None:
        """Runs first in a ``--workers`` worker, right after ``fork()``: whatever this kind of backend must
        re-initialise in a forked process (gevent its hub). Nothing by default."""

    @classmethod
    def original(cls, module: str, name: str):
        """The standard library's own ``module.name``, for the supervisor's process plumbing, which must
        never block in a call a backend has replaced (gevent's monkey-patching)."""
        return getattr(importlib.import_module(module), name)

    def ssl_module(self):
        """The ``ssl`` module TLS contexts come from (gevent brings its own cooperative one)."""
        return None

    def snapshot(self) -> dict:
        """The counters of everything this backend serves (see :mod:`echoserver.observability.stats`)."""
        return self.stats.snapshot()

    @abstractmethod
    def wake(self) -> None:
        """Interrupt whatever wait the backend's main loop is in."""

    def on_shutdown_signal(self, signum: int, frame: object = None) -> None:
        again = " again: closing all connections now" if self.stopping else f"; draining (up to {self.config.grace:g}s)"
        log.info("received %s%s", signal.Signals(signum).name, again)
        self.stop()

    def install_signal_handlers(self) -> None:
        """Route SIGINT/SIGTERM to :meth:`stop`; backends with their own loop override this."""
        if threading.current_thread() is threading.main_thread():
            for signum in SHUTDOWN_SIGNALS:
                signal.signal(signum, self.on_shutdown_signal)

    def accept_failed(self, exc: OSError) -> float:
        """Seconds to stop accepting after a failed ``accept()``; logs once per episode.

        Out of descriptors, the pending connection stays in the backlog and the
        listener stays readable: retrying at once would spin at 100% CPU.
        """
        if exc.errno in RESOURCE_ERRNOS:
            self.stats.error("accept_" + errno.errorcode.get(exc.errno, "error").lower())
            if not self._starved:
                self._starved = True
                log.warning(
                    "accept() failed: %s (this process may hold %d descriptors); pausing new connections "
                    "until some free up: add --workers or raise the hard limit",
                    exc.strerror,
                    open_file_limit(),
                )
            return 0.1
        log.debug("accept() failed: %s", exc)  # e.g. ECONNABORTED: the client left the backlog first
        return 0.0

    def accept_succeeded(self) -> None:
        if self._starved:
            self._starved = False
            log.warning("accepting connections again")
