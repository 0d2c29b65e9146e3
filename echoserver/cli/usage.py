"""How every command of this project fails: one line, exit 2, never a traceback.

Shared by ``echoserver`` and the clients (``echo-load``, ``echo-bench``,
``echo-client``), so that a usage error reads the same whichever tool printed it.
"""

from __future__ import annotations

import os
import sys


def run_click(command, args: list[str] | None, prog_name: str, **extra: object) -> int:
    """Run a click command the way every tool of this project behaves: a usage error is one
    line (``PROG: error: ...``) and exit status 2, Ctrl-C is 130, never a traceback for either."""
    import click

    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        print(f"{prog_name}: error: {exc.format_message()}{_from_environment(exc)}", file=sys.stderr, flush=True)
        code = 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        code = 130
    except EOFError:  # Ctrl-D at an interactive prompt
        code = 0
    return code if isinstance(code, int) else 0


def _from_environment(exc) -> str:
    """`` (from the environment: ECHOSERVER_PORT)`` when the bad value came from a variable."""
    import click
    from click.core import ParameterSource

    param, ctx = getattr(exc, "param", None), getattr(exc, "ctx", None)
    if not isinstance(exc, click.BadParameter) or param is None or ctx is None:
        return ""
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return ""
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    if ctx.auto_envvar_prefix and not names:
        names = [f"{ctx.auto_envvar_prefix}_{param.name.upper()}"]
    present = [name for name in names if name in os.environ]
    return f" (from the environment: {present[0]})" if present else " (from the environment)"


def fail(message: str, code: int = 2) -> None:
    """Exit with one line on stderr: what is wrong and what to do."""
    print(f"echoserver: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)
