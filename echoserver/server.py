"""The server core: bind, announce, hand the listener to a backend, report.

:func:`serve` runs a server in the calling (main) thread until SIGINT/SIGTERM,
as the CLI does. :func:`running_server` runs one in a background thread for
tests and embedding, and stops it when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from echoserver import backends
from echoserver.backends.base import Backend
from echoserver.config import ConfigError, ServerConfig
from echoserver.net.limits import check_backlog, raise_open_file_limit
from echoserver.net.listener import bind_listeners, remove_files, unix_paths
from echoserver.net.tls import server_context
from echoserver.observability.logs import StatsReporter
from echoserver.observability.ready import announce
from echoserver.observability.reporting import reporting
from echoserver.observability.stats import describe_totals, empty

log = logging.getLogger("echoserver")


def check(config: ServerConfig) -> type[Backend]:
    """Everything about ``config`` that can be checked before a socket is bound or a process forked.

    What :class:`ServerConfig` cannot check by itself because it needs the
    machine: the backend is installed, the TLS files exist, load and match.
    Done once, in the process that will bind and fork, so that a mistake is one
    error, never one per worker, and never reported as something else (a
    missing certificate is not "port in use"). Binding comes next and reports
    its own errors the same way, still before any child exists.
    """
    try:
        backend_class = backends.load(config.backend)
    except backends.UnknownBackend as exc:
        raise ConfigError("backend", str(exc)) from None
    server_context(config)
    return backend_class


def serve(config: ServerConfig, *, on_ready: Callable[[tuple], None] | None = None) -> dict:
    """Serve until SIGINT or SIGTERM, drain, and return the final counters (a stats snapshot).

    Raises :class:`~echoserver.config.ConfigError` (before anything is served or
    forked) when the configuration cannot work on this machine: the backend is
    unavailable, a TLS file is missing or wrong, the address cannot be bound.

    With ``config.workers > 1`` this process becomes the supervisor of that many
    worker processes (:mod:`echoserver.workers.supervisor`); the counters stay in the
    workers, so the returned ones are empty, and
    :class:`~echoserver.workers.supervisor.WorkersFailed` is raised if a worker
    did not drain cleanly.
    """
    backend_class = check(config)
    raise_open_file_limit()  # before binding or forking: every worker inherits it
    check_backlog(config.backlog)
    if config.workers > 1:
        from echoserver.workers.supervisor import WorkersFailed, supervise

        if supervise(config, backend_class):
            raise WorkersFailed("a worker did not drain cleanly (see the log above)")
        return empty()
    listeners = bind_listeners(config)
    addresses = [sock.getsockname() for sock in listeners]
    files = unix_paths(listeners)
    backend = backend_class(config)
    accepting = threading.Event()
    reporters: list[StatsReporter] = []

    def ready() -> None:
        accepting.set()
        for address in addresses:
            announce(address, config.backend)
        # The stats line starts with the server, never before its ready line (a backend may
        # take a moment to start: fork starts its fork server first).
        if config.stats_interval:
            reporters.append(StatsReporter(backend.snapshot, config.stats_interval).start())
        if on_ready:
            on_ready(addresses[0])

    try:
        with reporting(
            config.replace(stats_interval=0), backend.snapshot, lambda: accepting.is_set() and not backend.stopping
        ):
            backend.run(listeners, ready, handle_signals=True)
    finally:
        for reporter in reporters:
            reporter.stop()
        remove_files(files)
    totals = backend.snapshot()
    log.info("stopped: %s", describe_totals(totals))
    return totals


class RunningServer:
    """A server running in a background thread: its address, counters and a way to stop it."""

    def __init__(self, config: ServerConfig) -> None:
        if config.workers != 1:
            raise ConfigError(
                "workers",
                f"running_server runs one process, not {config.workers}; for --workers "
                "run the command (echoserver.spawn.ServerProcess does, for tests)",
            )
        self.config = config
        self.backend = check(config)(config)
        self.listeners = bind_listeners(config)
        self.addresses: list = [sock.getsockname() for sock in self.listeners]
        self.address: tuple = self.addresses[0][:2] if isinstance(self.addresses[0], tuple) else self.addresses[0]
        self._files = unix_paths(self.listeners)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"echoserver-{config.backend}", daemon=True)

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    def snapshot(self) -> dict:
        """Counters so far, every process of the server included (see :mod:`echoserver.observability.stats`)."""
        return self.backend.snapshot()

    def start(self, timeout: float = 10.0) -> RunningServer:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error:
            self.stop()
            raise RuntimeError(f"{self.config.backend} server did not start") from self._error
        return self

    def stop(self, *, force: bool = False, timeout: float | None = None) -> None:
        self.backend.stop(force=force)
        self._thread.join(timeout if timeout is not None else self.config.grace + 10)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.config.backend} server did not stop")
        remove_files(self._files)

    def _run(self) -> None:
        try:
            self.backend.run(self.listeners, self._ready.set)
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
            raise


@contextlib.contextmanager
def running_server(config: ServerConfig | None = None, **options: object) -> Iterator[RunningServer]:
    """Run a server in the background for the duration of a ``with`` block.

    >>> with running_server(backend="thread", port=0) as server:
    ...     socket.create_connection(server.address)

    Backends run unpatched here: a backend that the CLI would patch the process
    for uses its own cooperative calls explicitly, so the embedding process is
    left alone. One process only: ``workers`` other than 1 raises
    :class:`~echoserver.config.ConfigError` (the supervisor needs a process of
    its own, with its signal handlers).
    """
    config = (config or ServerConfig()).replace(**options) if options else (config or ServerConfig())
    server = RunningServer(config).start()
    try:
        yield server
    finally:
        server.stop()
