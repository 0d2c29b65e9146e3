"""What a server process tells the outside world while it runs: metrics endpoint and stats line.

The same for a single server and for the supervisor of ``--workers``; only the
``snapshot`` function differs (one process's counters, or the sum of every
worker's row in shared memory).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator

from echoserver.config import ServerConfig
from echoserver.net.listener import format_address
from echoserver.observability.logs import StatsReporter

log = logging.getLogger("echoserver")


@contextlib.contextmanager
def reporting(config: ServerConfig, snapshot: Callable[[], dict], accepting: Callable[[], bool]) -> Iterator[None]:
    """Start the metrics endpoint and the stats line as configured; stop them on exit.

    The endpoint is bound before the server announces itself, so a port clash is
    a start-up error like any other.
    """
    running: list = []
    if config.faults:
        from echoserver.sansio.faults import describe

        log.warning("fault injection on: %s", describe(config))
    try:
        if config.metrics_port is not None:
            from echoserver.observability.metrics import MetricsServer

            metrics = MetricsServer(
                config.metrics_host, config.metrics_port, snapshot, accepting, config.backend, os.getpid()
            ).start()
            running.append(metrics)
            log.info("metrics on http://%s/metrics", format_address((config.metrics_host, metrics.port)))
        if config.stats_interval:
            running.append(StatsReporter(snapshot, config.stats_interval).start())
        yield
    finally:
        for service in reversed(running):
            service.stop()
