"""``echoserver``: the command line, one option per :class:`~echoserver.config.ServerConfig` field.

:func:`main` looks for the backend name before anything else happens, so that
gevent can monkey-patch the standard library before ``socket``, ``threading``
or ``logging`` are imported. Every option can also come from an environment
variable ``ECHOSERVER_<OPTION>`` (for containers). Errors are one line and exit 2.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields

from . import backends

DEFAULT_BACKEND = "asyncio"


def _requested_backend(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg in ("--backend", "-b") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--backend="):
            return arg.partition("=")[2]
    return os.environ.get("ECHOSERVER_BACKEND", DEFAULT_BACKEND)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    backends.prepare_process(_requested_backend(args))

    import click

    from ._command import command

    try:
        code = command.main(args=args, prog_name="echoserver", standalone_mode=False,
                            auto_envvar_prefix="ECHOSERVER")
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, code: int = 2) -> None:
    """Exit with one line on stderr: what is wrong and what to do."""
    print(f"echoserver: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def config_fields() -> list[str]:
    from .config import ServerConfig

    return [f.name for f in fields(ServerConfig)]
