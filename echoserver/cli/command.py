"""The click command behind ``echoserver``; imported only after gevent had its chance to patch."""

from __future__ import annotations

import re
from dataclasses import fields

import click

from echoserver import backends
from echoserver.cli.usage import fail
from echoserver.config import HANDLERS, ConfigError, ServerConfig
from echoserver.observability.logs import setup_logging

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20, "mib": 1 << 20,
          "mb": 1000**2, "g": 1 << 30, "gib": 1 << 30, "gb": 1000**3}


class Size(click.ParamType):
    """A byte count: ``65536``, ``64k``, ``64KiB``, ``1MiB`` (k and M are binary; kB and MB decimal)."""

    name = "size"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(-?\d+)\s*([a-zA-Z]*)\s*", str(value))
        unit = match and match.group(2).lower()
        if not match or unit not in _UNITS:
            self.fail(f"{value!r} is not a size (examples: 65536, 64k, 64KiB, 1MiB)", param, ctx)
        return int(match.group(1)) * _UNITS[unit]


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
DEFAULTS = ServerConfig()


def _list_backends(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    for spec in backends.REGISTRY.values():
        state = "available" if spec.available else "missing  "
        note = "" if spec.available else f"  [{spec.why_unavailable()}]"
        click.echo(f"{spec.name:<11} {state}  {spec.summary}{note}")
    ctx.exit(0)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True,
                                 "max_content_width": 100})
@click.option("-b", "--backend", default=DEFAULTS.backend, show_envvar=True, metavar="NAME",
              help="Concurrency model: thread, threadpool, fork, gevent, asyncio, uvloop (see --list-backends).")
@click.option("--host", default=DEFAULTS.host, show_envvar=True,
              help="Address to listen on; 0.0.0.0 or :: exposes the server to the network.")
@click.option("-p", "--port", type=int, default=DEFAULTS.port, show_envvar=True,
              help="TCP port; 0 picks a free one (the ready line tells which).")
@click.option("--bind", multiple=True, show_envvar=True, metavar="ADDRESS",
              help="Listen here instead of --host/--port; repeatable: HOST:PORT, [IPV6]:PORT, unix:/PATH.sock "
                   "(ECHOSERVER_BIND: space-separated).")
@click.option("--handler", type=click.Choice(HANDLERS), default=DEFAULTS.handler, show_envvar=True,
              help="echo: every byte back; upper: ASCII upper-cased; line: whole newline-terminated lines.")
@click.option("--max-line", type=SIZE, default=DEFAULTS.max_line, show_envvar=True,
              help="Longest line the line handler accepts (newline included); longer gets an error and a close.")
@click.option("--cpu-work", type=int, default=DEFAULTS.cpu_work, show_envvar=True, metavar="N",
              help="Pure-Python iterations per message, holding the GIL: makes CPU-bound work visible.")
@click.option("--io-delay", type=float, default=DEFAULTS.io_delay, show_envvar=True, metavar="MS",
              help="Simulated IO wait per message, in milliseconds, slept the backend's own way.")
@click.option("--pool-size", type=int, default=DEFAULTS.pool_size, show_envvar=True,
              help="threadpool: worker threads; connections beyond them wait their turn.")
@click.option("--max-children", type=int, default=DEFAULTS.max_children, show_envvar=True,
              help="fork: most connection processes alive at once; more wait in the backlog.")
@click.option("--max-connections", type=int, default=DEFAULTS.max_connections, show_envvar=True, metavar="N",
              help="Most connections served at once (0: no limit); more wait in the listen backlog.")
@click.option("--idle-timeout", type=float, default=DEFAULTS.idle_timeout, show_envvar=True, metavar="S",
              help="Close a connection that makes no progress for S seconds (0: never).")
@click.option("--grace", type=float, default=DEFAULTS.grace, show_envvar=True, metavar="S",
              help="On SIGTERM/SIGINT, how long connected clients get to finish before being cut.")
@click.option("--backlog", type=int, default=DEFAULTS.backlog, show_envvar=True,
              help="Listen backlog: connections the kernel queues before the server accepts them.")
@click.option("--buffer-size", type=SIZE, default=DEFAULTS.buffer_size, show_envvar=True,
              help="Bytes read from a connection at a time.")
@click.option("--write-buffer-limit", type=SIZE, default=DEFAULTS.write_buffer_limit, show_envvar=True,
              help="Unsent reply bytes per connection before the server stops reading from it.")
@click.option("--workers", type=WorkerCount(), default=DEFAULTS.workers, show_envvar=True,
              help="Processes accepting on the one listening socket, each running the backend, under a supervisor "
                   "that restarts them; auto: one per available CPU. With fork: N accepting processes that each "
                   "fork per connection.")
@click.option("--tls-cert", default="", show_envvar=True, metavar="FILE", help="Serve TLS with this certificate (PEM).")
@click.option("--tls-key", default="", show_envvar=True, metavar="FILE", help="The certificate's private key (PEM).")
@click.option("--tls-client-ca", default="", show_envvar=True, metavar="FILE",
              help="Require client certificates signed by this CA (mutual TLS).")
@click.option("--proxy-protocol", type=click.Choice(["off", "optional", "required"]), default="off", show_envvar=True,
              help="Read the PROXY protocol v1/v2 header a load balancer prepends; optional: plain clients too.")
@click.option("--proxy-trusted", default=",".join(DEFAULTS.proxy_trusted), show_envvar=True, metavar="CIDR,...",
              help="Peers allowed to send a PROXY header (* for any); a header from any other peer closes "
                   "the connection, and with required so does its lack.")
@click.option("--header-timeout", type=float, default=DEFAULTS.header_timeout, show_envvar=True, metavar="S",
              help="Seconds, in all, a peer gets to send its PROXY header (independent of --idle-timeout).")
@click.option("--tls-handshake-timeout", type=float, default=DEFAULTS.tls_handshake_timeout, show_envvar=True,
              metavar="S", help="Seconds, in all, a peer gets to complete the TLS handshake.")
@click.option("--banner", default="", show_envvar=True, metavar="TEXT",
              help="A line sent once on connect; {hostname} and {backend} are filled in. Off by default.")
@click.option("--delay", type=Delay(), default="0", show_envvar=True,
              help="Fault injection: wait MS (+/- JITTER) milliseconds before each reply.")
@click.option("--reset-probability", type=float, default=0.0, show_envvar=True, metavar="P",
              help="Fault injection: abort the connection with an RST instead of replying, with probability P.")
@click.option("--trickle", type=SIZE, default=0, show_envvar=True, metavar="BYTES_PER_S",
              help="Fault injection: write replies at this many bytes per second.")
@click.option("--max-bytes-per-connection", type=SIZE, default=0, show_envvar=True, metavar="N",
              help="Fault injection: echo N bytes, then close the connection.")
@click.option("--metrics-port", type=int, default=None, show_envvar=True, metavar="PORT",
              help="Serve Prometheus metrics at /metrics and a health check at /healthz (0: any free port).")
@click.option("--metrics-host", default=DEFAULTS.metrics_host, show_envvar=True,
              help="Address of the metrics endpoint.")
@click.option("--stats-interval", type=float, default=DEFAULTS.stats_interval, show_envvar=True, metavar="S",
              help="Log connection, message and byte rates every S seconds (0: never).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_envvar=True, help="Peer resets and timeouts are logged at debug.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_envvar=True,
              help="json: one object per line, for containers and log shippers.")
@click.option("--list-backends", is_flag=True, expose_value=False, is_eager=True, callback=_list_backends,
              help="List the backends, whether each is installed, and exit.")
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
        config = ServerConfig(**{name: options[name] for name in (f.name for f in fields(ServerConfig))})
        backends.spec(config.backend)
    except ConfigError as exc:
        fail(f"invalid --{exc.option.replace('_', '-')}: {exc.message}")
    except backends.UnknownBackend as exc:
        fail(str(exc))

    from echoserver.server import serve

    try:
        serve(config)
    except ConfigError as exc:
        fail(exc.message)
