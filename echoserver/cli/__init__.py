"""``echoserver``: the command line, one option per :class:`~echoserver.config.ServerConfig` field.

:func:`main` looks for the backend name before anything else happens, so that
gevent can monkey-patch the standard library before ``socket``, ``threading``
or ``logging`` are imported. Every option can also come from an environment
variable ``ECHOSERVER_<OPTION>`` (for containers). Errors are one line and exit 2.
"""

from __future__ import annotations

import os
import sys

from echoserver import backends
from echoserver.config import ServerConfig


def _requested_backend(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg in ("--backend", "-b") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--backend="):
            return arg.partition("=")[2]
    return os.environ.get("ECHOSERVER_BACKEND", ServerConfig.backend)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    backends.prepare_process(_requested_backend(args))

    from echoserver.cli.command import command
    from echoserver.cli.usage import run_click

    sys.exit(run_click(command, args, "echoserver", auto_envvar_prefix="ECHOSERVER"))
