"""echo-load: drive an echo server, verify every byte, report throughput and latency.

\b
  echo-load --clients 20                       # 127.0.0.1:8080, 10 s, 64-byte messages
  echo-load --host ::1 --port 9000 --clients 200 --duration 30 --size 1024
  echo-load --clients 50 --rate 20000          # open loop: a fixed offered load
  echo-load --host unix:/run/echo.sock         # a Unix socket listener (echoserver --bind unix:...)
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

from echoclients.load import results
from echoclients.load.progress import ProgressLine
from echoclients.load.report import format_summary
from echoclients.load.spec import LoadSpec, SpecError
from echoserver.cli.options import config_options, config_values
from echoserver.cli.sizes import Size
from echoserver.cli.usage import run_click

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


@click.command(context_settings=CONTEXT, help=__doc__)
@config_options(LoadSpec, {"size": Size()})
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
def command(as_json: bool, quiet: bool, **options: object) -> int:
    try:
        spec = LoadSpec(**config_values(LoadSpec, options))
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
    if result.get("overlap") is not None and result["overlap"] < 0.9:
        shared = (
            "did not overlap at all"
            if result["overlap"] <= 0
            else f"shared only {result['overlap']:.0%} of the shortest one"
        )
        click.echo(
            f"echo-load merge: warning: the runs' measured windows {shared}; the summed rate is not "
            "a rate anyone saw at once (start the runs together, e.g. with the same --warmup)",
            err=True,
        )
    elif len(parts) > 1 and result.get("overlap") is None:
        click.echo(
            "echo-load merge: warning: some results carry no window times (older echo-load); "
            "cannot check that the runs overlapped",
            err=True,
        )
    _emit(result, as_json)
    return 0 if result["ok"] else 1


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_summary(result))
    if (
        not result.get("tls")
        and not result.get("messages")
        and result.get("errors")
        and set(result["errors"]) <= {"reset", "closed_by_server", "short_read"}
    ):
        click.echo(
            "echo-load: every connection was closed or reset before a reply: that is how a TLS "
            "listener answers plain text; if the server speaks TLS, add --tls (--tls-insecure for a "
            "self-signed certificate)",
            err=True,
        )
    if result.get("client_bound"):
        click.echo(
            "echo-load: warning: client-bound: echo-load's process was saturated while the server "
            "was not; add --processes or threads on another core",
            err=True,
        )
    elif result.get("client_bound") is None:
        click.echo(
            "echo-load: warning: echo-load's process was saturated (server CPU unknown: pass "
            "--server-pid); the figures may measure the client",
            err=True,
        )

    if result.get("client_late"):
        late, latency = result["send_lateness_us"]["p99"], result["latency_us"]["p99"]
        click.echo(
            f"echo-load: warning: client-late: messages left up to {late:,} us after their intended "
            f"time (p99), against a latency p99 of {latency:,} us; add --processes or threads",
            err=True,
        )


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    which, prog = (merge_command, "echo-load merge") if args[:1] == ["merge"] else (command, "echo-load")
    if which is merge_command:
        args = args[1:]
    sys.exit(run_click(which, args, prog))


if __name__ == "__main__":
    main()
