"""The body of a ``--workers`` worker process.

Kept apart from :mod:`echoserver.workers.supervisor`, which owns processes and signals:
a worker owns connections, exactly as a single server does.
"""

from __future__ import annotations

import logging
import os
import signal

from echoserver.backends.base import SHUTDOWN_SIGNALS
from echoserver.config import ServerConfig
from echoserver.observability.stats import Publisher, SlotTable, describe_totals
from echoserver.processes.children import die_with_parent

worker_log = logging.getLogger("echoserver.worker")

HANDLED_SIGNALS = (*SHUTDOWN_SIGNALS, signal.SIGCHLD)


def run_worker(
    config: ServerConfig,
    backend_class: type,
    listeners: list,
    ready_w: int,
    supervisor: int,
    table: SlotTable,
    slot: int,
) -> int:
    """The body of a worker process: run the backend on the inherited listener until told to stop."""
    backend_class.after_fork()
    _signal = backend_class.original("signal", "signal")
    backend = backend_class(config)
    for signum in SHUTDOWN_SIGNALS:  # until the backend installs its own
        _signal(signum, lambda signum, frame: backend.on_shutdown_signal(signum))
    _signal(signal.SIGCHLD, signal.SIG_DFL)
    die_with_parent(supervisor)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)

    def ready() -> None:
        os.write(ready_w, b"R")
        os.close(ready_w)

    publisher = Publisher(backend.snapshot, table, slot).start()
    try:
        backend.run(listeners, ready, handle_signals=True)
    finally:
        publisher.stop()
    totals = backend.snapshot()
    worker_log.info("worker %d stopped: %s", os.getpid(), describe_totals(totals))
    return 0
