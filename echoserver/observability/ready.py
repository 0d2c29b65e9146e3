"""The ready line: the one line a supervisor, a test or a person waits for on stderr.

Written by the server and by the ``--workers`` supervisor, parsed by
:class:`~echoserver.spawn.ServerProcess` and ``echo-bench``; one module keeps the
writer and the parser from drifting apart.
"""

from __future__ import annotations

import re

from echoserver.net.listener import format_address


def ready_line(address: tuple, backend: str) -> str:
    """The one line a supervisor, a test or a person waits for on stderr."""
    return f"listening on {format_address(address)} backend={backend}"


_READY = re.compile(r"listening on (?:unix:(?P<path>\S+)|\[?(?P<host>[^\]\s]+?)\]?:(?P<port>\d+)) "
                    r"backend=(?P<backend>\S+)")


def parse_ready_line(line: str) -> tuple[str, int, str] | None:
    """``(host, port, backend)`` from a ready line (``("unix:PATH", 0, backend)`` for a Unix
    socket), or ``None`` if ``line`` is not one."""
    match = _READY.search(line)
    if not match:
        return None
    if match["path"]:
        return (f"unix:{match['path']}", 0, match["backend"])
    return (match["host"], int(match["port"]), match["backend"])
