"""The click command behind ``echoserver``; imported only after gevent had its chance to patch.

Its options are the fields of :class:`ServerConfig` (defaults and help included); only what
is not configuration (logging, --list-backends, --version) is declared here.
"""

from __future__ import annotations

import click

from echoserver import backends
from echoserver.cli.options import config_options, config_values
from echoserver.cli.sizes import Size
from echoserver.cli.usage import fail
from echoserver.config import ConfigError, ServerConfig
from echoserver.observability.logs import setup_logging


class WorkerCount(click.ParamType):
    """A number of worker processes, or ``auto``: one per CPU available to this process."""

    name = "N|auto"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if isinstance(value, int):
            return value
        if str(value).strip().lower() == "auto":
            from echoserver.processes.cpus import available_cpus

            return available_cpus()
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of workers (a whole number, or auto)", param, ctx)


class Delay(click.ParamType):
    """``MS`` or ``MS:JITTER``: a fixed delay per reply, optionally give or take a random jitter."""

    name = "MS[:JITTER]"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if isinstance(value, tuple):
            return value
        base, _, jitter = str(value).partition(":")
        try:
            return (float(base), float(jitter or 0))
        except ValueError:
            self.fail(f"{value!r} is not MS or MS:JITTER (examples: 50, 50:10)", param, ctx)


SIZE = Size()


def _list_backends(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from echoserver.observability.gil import describe

    for spec in backends.REGISTRY.values():
        state = "available  " if spec.available else "unavailable"
        note = "" if spec.available else f"  [{spec.why_unavailable()}]"
        click.echo(f"{spec.name:<12} {state}  {spec.summary}{note}")
    python = describe()
    build = "free-threaded build" if python["free_threaded"] else "default build"
    click.echo(f"python: {python['version']} ({build}), GIL {'on' if python['gil'] else 'off'}")
    ctx.exit(0)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100})
@config_options(
    ServerConfig,
    {"size": SIZE, "delay": Delay(), "workers": WorkerCount()},
    help_values={"backends": ", ".join(backends.REGISTRY)},
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_envvar=True,
    help="Peer resets and timeouts are logged at debug.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_envvar=True,
    help="json: one object per line, for containers and log shippers.",
)
@click.option(
    "--list-backends",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_backends,
    help="List the backends, whether each is installed, and exit.",
)
@click.version_option(package_name="echoserver")
def command(log_level: str, log_format: str, **options: object) -> None:
    """Serve TCP echo on one of six Python concurrency models.

    \b
      echoserver --backend gevent --port 8080
      echoserver --backend uvloop --host ::1 --port 0
      echoserver --backend thread --handler upper --cpu-work 20000
    """
    setup_logging(log_level, log_format)
    try:
        config = ServerConfig(**config_values(ServerConfig, options))
        backends.spec(config.backend)
    except ConfigError as exc:
        fail(f"invalid --{exc.option.replace('_', '-')}: {exc.message}")
    except backends.UnknownBackend as exc:
        fail(str(exc))

    from echoserver.server import serve
    from echoserver.workers.supervisor import WorkersFailed

    try:
        serve(config)
    except ConfigError as exc:
        fail(exc.message)
    except WorkersFailed as exc:
        fail(str(exc), code=1)
