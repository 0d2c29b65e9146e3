"""The ready line: the one line a supervisor, a test or a person waits for on stderr.

Written by the server and by the ``--workers`` supervisor, parsed by
:class:`~echoserver.spawn.ServerProcess` and ``echo-bench``; one module keeps the
writer and the parser from drifting apart.
"""

from __future__ import annotations

import logging
import re
import sys

from echoserver.net.listener import format_address
from echoserver.observability.gil import gil_state
from echoserver.observability.logs import JsonFormatter


def ready_line(address: tuple, backend: str) -> str:
    """The one line a supervisor, a test or a person waits for on stderr.

    On a free-threaded build it ends in `` gil=off`` or `` gil=on``, read after
    every import (an extension can turn the GIL back on); elsewhere it says
    nothing about the GIL, so parsers written for the short line keep working.
    """
    line = f"listening on {format_address(address)} backend={backend}"
    state = gil_state()
    return line if state is None else f"{line} gil={state}"


def announce(address: tuple, backend: str, **extra: object) -> None:
    """Print the ready line on stderr, flushed: as text, or as one JSON object under ``--log-format json``.

    Printed, not logged: it must appear whatever ``--log-level`` says. Extra
    fields (``workers=2``) follow the text line, or are fields of the object.
    """
    line = " ".join([ready_line(address, backend), *(f"{key}={value}" for key, value in extra.items())])
    formatter = next(
        (handler.formatter for handler in logging.getLogger().handlers if isinstance(handler.formatter, JsonFormatter)),
        None,
    )
    if formatter is not None:
        record = logging.LogRecord("echoserver", logging.INFO, __file__, 0, line, None, None)
        record.__dict__.update({"address": format_address(address), "backend": backend, **extra})
        line = formatter.format(record)
    print(line, file=sys.stderr, flush=True)


_READY = re.compile(
    r"listening on (?:unix:(?P<path>\S+)|\[?(?P<host>[^\]\s]+?)\]?:(?P<port>\d+)) "
    r"backend=(?P<backend>\S+)"
)
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
