"""The body of a ``--workers`` worker process, and how to say how one ended.

Kept apart from :mod:`echoserver.workers.supervisor`, which owns processes and signals:
a worker owns connections, exactly as a single server does.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from echoserver.processes.children import die_with_parent, stdlib
from echoserver.backends.base import SHUTDOWN_SIGNALS
from echoserver.config import ServerConfig
from echoserver.observability.stats import Publisher, SlotTable, describe_totals

worker_log = logging.getLogger("echoserver.worker")

HANDLED_SIGNALS = (*SHUTDOWN_SIGNALS, signal.SIGCHLD)
_signal = stdlib("signal", "signal")


def run_worker(config: ServerConfig, backend_class: type, listeners: list, ready_w: int, supervisor: int,
               table: SlotTable, slot: int) -> int:
    """The body of a worker process: run the backend on the inherited listener until told to stop."""
    if "gevent" in sys.modules:
        # gevent's own fork does this; ours is the plain one, so do it here (a
        # no-op unless a hub already existed in the supervisor).
        import gevent

        gevent.reinit()
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


def describe_exit(status: int) -> str:
    """``exited with status 3`` or ``was killed by SIGKILL``, from a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"
