"""The ready line: the one line a supervisor, a test or a person waits for on stderr.

Written by the server and by the ``--workers`` supervisor, parsed by
:class:`~echoserver.spawn.ServerProcess` and ``echo-bench``; one module keeps the
writer and the parser from drifting apart.
"""

from __future__ import annotations

import re

from echoserver.net.listener import format_address
from echoserver.observability.gil import gil_state


def ready_line(address: tuple, backend: str) -> str:
    """The one line a supervisor, a test or a person waits for on stderr.

    On a free-threaded build it ends in `` gil=off`` or `` gil=on``, read after
    every import (an extension can turn the GIL back on); elsewhere it says
    nothing about the GIL, so parsers written for the short line keep working.
    """
    line = f"listening on {format_address(address)} backend={backend}"
    state = gil_state()
    return line if state is None else f"{line} gil={state}"


_READY = re.compile(r"listening on (?:unix:(?P<path>\S+)|\[?(?P<host>[^\]\s]+?)\]?:(?P<port>\d+)) "
                    r"backend=(?P<backend>\S+)")
_GIL = re.compile(r" gil=(?P<gil>on|off)\b")


def parse_ready_line(line: str) -> tuple[str, int, str] | None:
    """``(host, port, backend)`` from a ready line (``("unix:PATH", 0, backend)`` for a Unix
    socket), or ``None`` if ``line`` is not one."""
    match = _READY.search(line)
    if not match:
        return None
    if match["path"]:
        return (f"unix:{match['path']}", 0, match["backend"])
    return (match["host"], int(match["port"]), match["backend"])


def parse_gil(line: str) -> str | None:
    """``"on"`` or ``"off"`` from a free-threaded server's ready line; ``None`` when it does not say."""
    match = _GIL.search(line)
    return match["gil"] if match else None
