"""echo-load: drive an echo server, verify every byte, report throughput and latency.

\b
  echo-load --clients 20                       # 127.0.0.1:8080, 10 s, 64-byte messages
  echo-load --host ::1 --port 9000 --clients 200 --duration 30 --size 1024
  echo-load --clients 50 --rate 20000          # open loop: a fixed offered load
  echo-load --clients 20 --json                # machine-readable result on stdout
  echo-load --tls --tls-ca ca.pem --port 8443  # TLS: connect latency includes the handshake
  echo-load --send-proxy v2 --banner-lines 1   # behind-a-load-balancer servers
  echo-load merge a.json b.json                # combine runs from several machines exactly

Exit status: 0 when every message came back intact, 1 when any error or
mismatch was seen, 2 for a usage error.
"""

from __future__ import annotations

import json
import sys

import click

from echoserver.cli.usage import run_click

from echoclients.load import results
from echoclients.load.spec import ENGINES, PROXY_VERSIONS, LoadSpec, SpecError
from echoclients.load.payload import EXPECTS, PAYLOADS
from echoclients.load.progress import ProgressLine
from echoclients.load.report import format_summary

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


@click.command(context_settings=CONTEXT, help=__doc__)
@click.option("--host", default="127.0.0.1", help="Server address (name, IPv4 or IPv6).")
@click.option("-p", "--port", type=int, default=8080)
@click.option("-c", "--clients", type=int, default=20, help="Concurrent connections.")
@click.option("-t", "--threads", type=int, default=0,
              help="Worker threads in all, each multiplexing its share of the connections (0: one per usable CPU).")
@click.option("--processes", type=int, default=1, help="Spread the threads over this many processes (GILs).")
@click.option("-d", "--duration", type=float, default=None, help="Seconds measured  [default: 10]")
@click.option("-n", "--requests", type=int, default=0, help="Stop after this many replies instead (0: use --duration).")
@click.option("--warmup", type=float, default=None, help="Seconds run but not counted  [default: 1, 0 with --requests]")
@click.option("-s", "--size", type=int, default=64, help="Bytes per message.")
@click.option("--payload", type=click.Choice(PAYLOADS), default="random",
              help="ascii: letters and digits, each message ending in a newline (works with --handler line).")
@click.option("--pipeline", type=int, default=1, help="Messages in flight per connection (closed loop).")
@click.option("--rate", type=float, default=0.0, help="Open loop: messages/s in total, latency from intended send times.")
@click.option("--connect-timeout", type=float, default=5.0, help="Seconds a connect may take.")
@click.option("--timeout", type=float, default=10.0, help="Seconds a reply may take before it counts as an error.")
@click.option("--expect", type=click.Choice(EXPECTS), default="echo", help="What the server sends back.")
@click.option("--engine", type=click.Choice(ENGINES), default="epoll",
              help="blocking: the tutorial client, one blocking thread per connection.")
@click.option("--backend", default="", help="Label the result with the server's backend name.")
@click.option("--server-pid", type=int, default=0, help="Sample this local server's CPU and memory over the window.")
@click.option("--seed", type=int, default=None, help="Seed the payload (default: random).")
@click.option("--tls", is_flag=True, help="Speak TLS; connect_us then includes the handshake.")
@click.option("--tls-ca", default="", metavar="FILE", show_default=False,
              help="Verify the server against this CA  [default: the system store]")
@click.option("--tls-insecure", is_flag=True, help="Do not verify the server's certificate (self-signed servers).")
@click.option("--send-proxy", type=click.Choice(PROXY_VERSIONS), default=None,
              help="Send a PROXY protocol header first (source: this connection, destination: the server).")
@click.option("--banner-lines", type=int, default=0,
              help="Read and drop this many lines the server sends on connect (echoserver --banner: 1).")
@click.option("--connect-rate", type=float, default=0.0,
              help="Open at most this many connections a second, in total (0: all at once).")
@click.option("--source-addresses", type=int, default=0,
              help="Connect from 127.0.0.2, .3, ... (loopback targets; 0: one per 10,000 connections).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
def command(as_json: bool, quiet: bool, send_proxy: str | None, **options: object) -> int:
    try:
        spec = LoadSpec(send_proxy=send_proxy or "", **options)
        from echoclients.load.runner import check_descriptor_limit

        spec.sources(*spec.resolve())
        check_descriptor_limit(spec)
    except SpecError as exc:
        raise click.UsageError(str(exc)) from None
    from echoclients.load.runner import run

    progress = None if quiet or not sys.stderr.isatty() else ProgressLine(spec)
    result = run(spec, progress.update if progress else None)
    if progress:
        progress.clear()
    _emit(result, as_json)
    return 0 if result["ok"] else 1


@click.command(context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the merged result as JSON.")
def merge_command(files: tuple[str, ...], as_json: bool) -> int:
    """Combine ``echo-load --json`` results of runs made side by side (several machines, one server).

    Percentiles come from the sum of the HDR histograms, never from averaged
    percentiles; rates add up.
    """
    parts = []
    for name in files:
        try:
            with click.open_file(name) as handle:
                parts.append(json.load(handle))
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"{name}: not an echo-load --json result ({exc})") from None
        if not isinstance(parts[-1], dict) or "histogram" not in parts[-1]:
            raise click.UsageError(f"{name}: not an echo-load --json result (no histogram)")
    result = results.merge(parts)
    _emit(result, as_json)
    return 0 if result["ok"] else 1


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_summary(result))
    if result.get("client_bound"):
        click.echo("echo-load: warning: client-bound: echo-load's process was saturated while the server "
                   "was not; add --processes or threads on another core", err=True)
    elif result.get("client_bound") is None:
        click.echo("echo-load: warning: echo-load's process was saturated (server CPU unknown: pass "
                   "--server-pid); the figures may measure the client", err=True)


    if result.get("client_late"):
        late, latency = result["send_lateness_us"]["p99"], result["latency_us"]["p99"]
        click.echo(f"echo-load: warning: client-late: messages left up to {late:,} us after their intended "
                   f"time (p99), against a latency p99 of {latency:,} us; add --processes or threads",
                   err=True)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    which, prog = (merge_command, "echo-load merge") if args[:1] == ["merge"] else (command, "echo-load")
    if which is merge_command:
        args = args[1:]
    sys.exit(run_click(which, args, prog))


if __name__ == "__main__":
    main()
