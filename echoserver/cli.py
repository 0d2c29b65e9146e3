"""``echoserver``: the command line, one option per :class:`~echoserver.config.ServerConfig` field.

:func:`main` looks for the backend name before anything else happens, so that
gevent can monkey-patch the standard library before ``socket``, ``threading``
or ``logging`` are imported. Every option can also come from an environment
variable ``ECHOSERVER_<OPTION>`` (for containers), and the port from ``PORT``
where ``ECHOSERVER_PORT`` is unset. Errors are one line and exit 2.
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


def _port_from_platform(environ=os.environ) -> None:
    """Heroku, Cloud Run and most platforms that run containers say which port to listen on
    in ``$PORT``; an explicit ``ECHOSERVER_PORT`` (or ``--port``) still wins."""
    port = environ.get("PORT", "").strip()
    if not port or environ.get("ECHOSERVER_PORT", "").strip():
        return
    if not port.isdigit():
        fail(f"PORT is not a port number: {port!r} (set ECHOSERVER_PORT or --port to override it)")
    environ["ECHOSERVER_PORT"] = port


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    _port_from_platform()
    backends.prepare_process(_requested_backend(args))

    from ._command import command

    sys.exit(run_click(command, args, "echoserver", auto_envvar_prefix="ECHOSERVER"))


def run_click(command, args: list[str] | None, prog_name: str, **extra: object) -> int:
    """Run a click command the way every tool of this project behaves: a usage error is one
    line (``PROG: error: ...``) and exit status 2, Ctrl-C is 130, never a traceback for either."""
    import click

    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        print(f"{prog_name}: error: {exc.format_message()}", file=sys.stderr, flush=True)
        code = 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        code = 130
    except EOFError:  # Ctrl-D at an interactive prompt
        code = 0
    return code if isinstance(code, int) else 0


def fail(message: str, code: int = 2) -> None:
    """Exit with one line on stderr: what is wrong and what to do."""
    print(f"echoserver: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def config_fields() -> list[str]:
    from .config import ServerConfig

    return [f.name for f in fields(ServerConfig)]
