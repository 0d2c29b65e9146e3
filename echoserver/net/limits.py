"""The kernel limits that decide how many connections one server process can hold.

Each connection is a descriptor, and a process may have no more open than its
soft ``RLIMIT_NOFILE``, which is often 1,024 while the hard limit allows far
more. The server lifts the soft limit to the hard one before it binds or forks
(workers inherit it) and says what it got; past it, ``accept()`` fails with
EMFILE and the backends pause accepting (``Backend.accept_failed``). The
listen backlog is capped by ``net.core.somaxconn``, silently: a larger
``--backlog`` is reported instead of pretending.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger("echoserver")
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def raise_open_file_limit() -> int:
    """Lift the soft descriptor limit as far as the hard one allows; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. an infinite hard limit the kernel will not grant
            log.debug("could not raise the descriptor limit from %d: %s", soft, exc)
    log.debug("descriptor limit: %s per process", "unlimited" if soft == resource.RLIM_INFINITY else soft)
    return soft


def open_file_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def check_backlog(backlog: int) -> None:
    """Warn when ``--backlog`` exceeds what the kernel will grant (it caps it without a word)."""
    try:
        cap = int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return
    if backlog > cap:
        log.warning(
            "--backlog %d is above the kernel's net.core.somaxconn (%d): the queue holds %d; "
            "raise the sysctl to get more",
            backlog,
            cap,
            cap,
        )
