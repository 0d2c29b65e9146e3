"""echo-bench: every backend under the same load, side by side.

\b
  echo-bench                                   # every installed backend, scenario echo
  echo-bench --scenario io --backend thread --backend gevent --out results/
  echo-bench --run "uvloop-1=uvloop" --run "uvloop-2=uvloop --workers 2"
  echo-bench --target thread=thread:8080 --target gevent=gevent:8080 --out /results
  echo-bench --scenario cpu -b thread --python python3.13t --python 'python3.13t -X gil=1'

Each run starts a fresh echoserver (--port 0), waits for its ready
line, runs echo-load against it with identical settings, and stops it;
--target NAME=HOST:PORT measures a server that is already running instead.
Runs are repeated --repeat times, interleaved (A B C, A B C, ...), so a
neighbour's burst of work hits every backend alike; every figure reported is
the median of the repeats with their spread (min-max). Writes report.html
(one self-contained page: tables, charts, parameters), results.md,
results.csv, runs.csv, results.json and the charts' PNGs into --out.
Exit status: 0 when every run was clean, 1 when any run saw errors or
mismatches or its server did not start, 2 for a usage error.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from echoclients.bench.mixed import with_heavy_clients
from echoclients.bench.output import write_outputs
from echoclients.bench.pythons import Python, PythonError, current, probe
from echoclients.bench.scenarios import SCENARIOS
from echoclients.load.runner import raise_fd_limit
from echoclients.load.spec import LoadSpec, SpecError
from echoserver.backends import REGISTRY
from echoserver.cli.sizes import Size
from echoserver.cli.usage import run_click

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


@dataclass(frozen=True)
class Run:
    """One column of the comparison: a backend started with extra flags, or a running server."""

    label: str
    backend: str
    server_args: tuple[str, ...] = ()
    target: tuple[str, int] | None = None  # (host, port) of a server already running
    python: Python | None = None  # the interpreter its server runs on (None: echo-bench's own)


def parse_run(text: str) -> Run:
    """``LABEL=BACKEND [server flags...]``, e.g. ``"uvloop-2=uvloop --workers 2"``."""
    label, sep, rest = text.partition("=")
    words = shlex.split(rest)
    if not sep or not label or not words:
        raise click.BadParameter(f"{text!r}: expected LABEL=BACKEND [server flags]")
    return Run(label, words[0], tuple(words[1:]))


def parse_target(text: str) -> Run:
    """``NAME=HOST:PORT`` (``NAME=[::1]:PORT`` for IPv6)."""
    label, sep, address = text.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not label or not colon or not port.isdigit():
        raise click.BadParameter(f"{text!r}: expected NAME=HOST:PORT")
    return Run(label, label, target=(host.strip("[]"), int(port)))


def measure(
    run: Run,
    spec: LoadSpec,
    scenario_args: tuple[str, ...],
    on_line=print,
    heavy: dict | None = None,
    sessions: int = 1,
) -> list[dict]:
    """One run: start its server if needed, load it ``sessions`` times, stop it; a result per session.

    The first session meets a fresh server (a cost that lasts only until the first client
    leaves shows there); later ones a warmed one, labelled so. ``heavy``: LoadSpec fields of
    clients run beside the measured ones (the mixed scenario).
    """
    from echoserver.spawn import ServerProcess

    if run.target:
        return [_load_beside(heavy, run, spec.replace(host=run.target[0], port=run.target[1]), on_line)]
    args = ("--backend", run.backend, "--log-level", "warning", *scenario_args, *run.server_args)
    python = run.python or current()
    try:
        server = ServerProcess(*args, python=python.command).start()
    except RuntimeError as exc:
        on_line(f"echo-bench: {run.label}: server did not start: {str(exc).splitlines()[0]}")
        return [{"label": run.label, "backend": run.backend, "failed": "server did not start"}]
    results = []
    try:
        idle = idle_pss_mb(server.pid)
        for session in range(1, sessions + 1):
            labelled = run if session == 1 else Run(f"{run.label} (session {session})", run.backend)
            results.append(
                _load_beside(
                    heavy, labelled, spec.replace(host=server.host, port=server.port, server_pid=server.pid), on_line
                )
            )
    finally:
        code = server.stop()
    for result in results:
        result["server_exit"] = code
        result["server_idle_pss_mb"] = idle
        result["server_args"] = list(args[4:])
        result["server_python"] = python.describe(server.gil)
        if python.gil_flag(server.gil):
            on_line(f"echo-bench: {result['label']}: {python.gil_flag(server.gil)}; not counted")
            result["failed"] = python.gil_flag(server.gil)
    return results


def _load_beside(heavy: dict | None, run: Run, spec: LoadSpec, on_line) -> dict:
    if not heavy:
        return _load(run, spec, on_line)
    busy = LoadSpec(
        **{
            **heavy,
            "host": spec.host,
            "port": spec.port,
            "warmup": 0.0,
            "duration": spec.warmup_seconds + spec.run_seconds + 1.0,
        }
    )
    return with_heavy_clients(lambda: _load(run, spec, on_line), _load_args(busy), on_line)


def idle_pss_mb(pid: int) -> float | None:
    """The server's PSS before any client connects: what per-connection memory is measured from."""
    import psutil

    try:
        server = psutil.Process(pid)
        processes = [server, *server.children(recursive=True)]
        return round(sum(getattr(p.memory_full_info(), "pss", 0) for p in processes) / 2**20, 2)
    except psutil.Error:
        return None


def _load(run: Run, spec: LoadSpec, on_line) -> dict:
    args = _load_args(spec.replace(backend=run.backend))
    proc = subprocess.run(
        [sys.executable, "-m", "echoclients.load.cli", *args, "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=_time_limit(spec),
    )
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        on_line(f"echo-bench: {run.label}: echo-load failed: {proc.stderr.strip()[:200]}")
        return {"label": run.label, "backend": run.backend, "failed": "echo-load failed"}
    for line in proc.stderr.splitlines():
        on_line(f"{run.label}: {line}")
    result["label"] = run.label
    return result


def _load_args(spec: LoadSpec) -> list[str]:
    """The echo-load command line equivalent to ``spec`` (so the run can be repeated by hand)."""
    args = []
    for name, value in vars(spec).items():
        if value in (None, "", 0, 0.0, False) and name != "port":
            continue
        flag = f"--{name.replace('_', '-')}"
        args += [flag] if value is True else [flag, str(value)]
    return args


def _time_limit(spec: LoadSpec) -> float:
    return spec.connect_timeout + spec.warmup_seconds + spec.run_seconds + spec.timeout + 60


@click.command(context_settings=CONTEXT, help=__doc__)
@click.option(
    "--scenario",
    type=click.Choice(list(SCENARIOS)),
    default="echo",
    help="What load, and which server flags: " + "; ".join(f"{s.name}: {s.teaches}" for s in SCENARIOS.values()),
)
@click.option(
    "-b",
    "--backend",
    "backends",
    multiple=True,
    metavar="NAME",
    help="Start and measure this backend (repeatable)  [default: every installed one]",
)
@click.option(
    "--run",
    "runs",
    multiple=True,
    metavar="'LABEL=BACKEND [FLAGS]'",
    help="A run with its own server flags, e.g. 'uvloop-2=uvloop --workers 2' (repeatable).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="NAME=HOST:PORT",
    help="Measure a server that is already running instead of starting one (repeatable).",
)
@click.option("--server-args", default="", help="Extra flags for every server echo-bench starts.")
@click.option(
    "--python",
    "pythons",
    multiple=True,
    metavar="'PATH [OPTIONS]'",
    help="Run every server under this interpreter (repeatable; each run is made once per interpreter, "
    "labelled e.g. thread@3.13t, thread@3.13t+gil for '--python \"python3.13t -X gil=1\"'). "
    "echoserver must be installed there.",
)
@click.option("-c", "--clients", type=int, default=None, help="[default: the scenario's]")
@click.option("-d", "--duration", type=float, default=5.0, help="Seconds measured per run.")
@click.option("--warmup", type=float, default=1.0)
@click.option(
    "-s", "--size", type=Size(), default=None, help="Bytes per message, e.g. 64, 1k, 64KiB  [default: the scenario's]"
)
@click.option("-t", "--threads", type=int, default=0, help="echo-load worker threads (0: one per CPU).")
@click.option("--processes", type=int, default=None, help="echo-load processes  [default: the scenario's, else 1]")
@click.option("--pipeline", type=int, default=1)
@click.option("--rate", type=float, default=None, help="Open loop, msg/s  [default: the scenario's, else closed]")
@click.option(
    "--tls",
    is_flag=True,
    help="echo-load speaks TLS without verifying (--tls-insecure); give the servers "
    "--server-args '--tls-cert FILE --tls-key FILE'.",
)
@click.option(
    "-r",
    "--repeat",
    type=click.IntRange(1, 100),
    default=3,
    help="Measure every run this many times, interleaved; report the median and min-max.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    help="Folder for report.html, results.md, .csv, .json and the charts.",
)
@click.option("--no-chart", is_flag=True, help="Skip the charts.")
@click.option(
    "--sessions",
    type=click.IntRange(1, 10),
    default=1,
    help="Client sessions per server: the first meets a fresh server, later ones a warmed one.",
)
def command(
    scenario: str,
    backends: tuple,
    runs: tuple,
    targets: tuple,
    server_args: str,
    out: Path,
    no_chart: bool,
    tls: bool,
    pythons: tuple,
    repeat: int,
    sessions: int,
    **load: object,
) -> int:
    chosen = SCENARIOS[scenario]
    try:
        interpreters = [probe(text) for text in pythons]
    except PythonError as exc:
        raise click.UsageError(str(exc)) from None
    plan = _under(interpreters, _plan(backends, runs, targets, tuple(shlex.split(server_args))))
    overrides = {name: value for name, value in load.items() if value is not None}
    if tls:
        overrides.update(tls=True, tls_insecure=True)
    try:
        spec = LoadSpec(**{**chosen.load, **overrides})
    except SpecError as exc:
        raise click.UsageError(str(exc)) from None
    raise_fd_limit(spec.clients * 2 + 256)  # the servers inherit it
    schedule = [(n, run) for n in range(1, repeat + 1) for run in plan]  # interleaved: A B C, A B C
    click.echo(
        f"echo-bench: scenario {scenario} ({chosen.teaches}); {len(plan)} runs x {repeat} repeats "
        f"= {len(schedule)}, about {_eta(len(schedule), sessions * (spec.run_seconds + spec.warmup_seconds) + 2)}",
        err=True,
    )
    results, started = [], time.monotonic()
    for i, (n, run) in enumerate(schedule):
        click.echo(
            f"echo-bench: run {i + 1}/{len(schedule)}: {run.label} (repeat {n}/{repeat})"
            + (f", {_eta(len(schedule) - i, (time.monotonic() - started) / i)} left" if i else ""),
            err=True,
        )
        for result in measure(
            run,
            spec,
            chosen.server_args,
            on_line=lambda line: click.echo(line, err=True),
            heavy=chosen.heavy,
            sessions=sessions,
        ):
            result["repeat"] = n
            results.append(result)
            click.echo(_row_line(result), err=True)
    table, written = write_outputs(
        results, out, scenario=chosen, spec=spec, command=_command_line(), repeat=repeat, chart=not no_chart
    )
    click.echo(table)
    click.echo(f"echo-bench: wrote {', '.join(str(path) for path in written)}", err=True)
    click.echo(f"echo-bench: open {out / 'report.html'} in a browser for the tables and charts", err=True)
    return 0 if all(result.get("ok") for result in results) else 1


def _row_line(r: dict) -> str:
    """One finished run, as soon as it finishes."""
    if r.get("failed"):
        return f"  {r['label']} #{r['repeat']}: {r['failed']}"
    latency = r.get("latency_us") or {}
    errors = ", ".join(f"{k} {v:,}" for k, v in sorted((r.get("errors") or {}).items())) or "no errors"
    return (
        f"  {r['label']} #{r['repeat']}: {r.get('msgs_per_s', 0):,.0f} msg/s, p50 {_us(latency.get('p50'))}, "
        f"p99 {_us(latency.get('p99'))}, {errors}" + (", CLIENT-BOUND" if r.get("client_bound") else "")
    )


def _us(value) -> str:
    return "-" if value is None else f"{value:,.0f} us"


def _eta(runs: int, seconds_each: float) -> str:
    seconds = round(runs * seconds_each)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _plan(backends: tuple, runs: tuple, targets: tuple, server_args: tuple) -> list[Run]:
    plan = [parse_target(text) for text in targets] + [parse_run(text) for text in runs]
    names = backends or (() if plan else tuple(name for name, spec in REGISTRY.items() if spec.available))
    for name in names:
        if name not in REGISTRY:
            raise click.UsageError(f"unknown backend {name!r}; choose from {', '.join(REGISTRY)}")
        plan.append(Run(name, name))
    return [Run(r.label, r.backend, r.server_args + (() if r.target else server_args), r.target) for r in plan]


def _under(interpreters: list[Python], plan: list[Run]) -> list[Run]:
    """Every started run once per interpreter (the servers given by --target as they are)."""
    if not interpreters:
        return plan
    return [run for run in plan if run.target] + [
        Run(f"{run.label}@{python.label}", run.backend, run.server_args, python=python)
        for run in plan
        if not run.target
        for python in interpreters
    ]  # A/B pairs side by side in time


def _command_line() -> str:
    return " ".join(["echo-bench", *map(shlex.quote, sys.argv[1:])])


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_click(command, argv, "echo-bench"))


if __name__ == "__main__":
    main()
