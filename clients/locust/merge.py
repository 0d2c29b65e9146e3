"""Full-resolution latencies across Locust workers, merged on the master the way ``echo-load merge`` does.

Each process keeps an echo-load partial result (counters, and an HDR histogram
of round trips in nanoseconds) for its users. A worker attaches it to every
stats report it sends the master (Locust's ``report_to_master`` event: the
custom data rides in the same message as Locust's own numbers, so the two
always describe the same requests). The master keeps each worker's latest part
and, when the test ends, adds them with :func:`echoclients.load.results.merge`,
the function behind ``echo-load merge``: histograms add, percentiles are read
off the sum, never averaged. The merged result is printed in echo-load's
format and, with ``--echo-result FILE``, written as echo-load JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from echoclients.load.report import format_summary
from echoclients.load.results import LatencyRecorder, encode, finish, merge

log = logging.getLogger("echoclients.locust")
_KEY = "echo_hdr"


class Recorder:
    """This process's share: what echo-load's runner would report for these connections."""

    def __init__(self, environment, size: int) -> None:
        self.environment, self.size = environment, size
        self.latency, self.connect = LatencyRecorder(), LatencyRecorder()
        self.per_user: Counter = Counter()
        self.errors: Counter = Counter()
        self.mismatches = self.messages = 0
        self.first = self.last = 0

    def connected(self, ns: int) -> None:
        self.connect.record(ns)

    def record(self, user: int, ns: int, failure: str | None) -> None:
        now = time.perf_counter_ns()
        self.first = self.first or now - ns
        self.last = now
        if failure is None or failure == "mismatch":
            self.latency.record(ns)
            self.messages += 1
            self.per_user[user] += 1
            self.mismatches += failure == "mismatch"
        else:
            self.errors[failure] += 1
        self.latency.maybe_fold()

    def part(self) -> dict:
        """A raw echo-load partial result (no derived fields), as a worker sends it."""
        host = self.environment.host or ""
        return {
            "schema": "echo-load/1",
            "backend": None,
            "target": host.removeprefix("tcp://"),
            "engine": "locust",
            "clients": len(self.per_user),
            "processes": 1,
            "threads": 1,
            "size": self.size,
            "payload": "random",
            "expect": "echo",
            "pipeline": 1,
            "rate": None,
            "tls": False,
            "send_proxy": None,
            "warmup_s": 0.0,
            "duration_s": round((self.last - self.first) / 1e9, 6),
            "messages": self.messages,
            "bytes": self.messages * self.size,
            "errors": dict(self.errors),
            "mismatches": self.mismatches,
            "per_connection": list(self.per_user.values()),
            "histogram": encode(self.latency.fold()),
            "connect_histogram": encode(self.connect.fold()),
            "cpu": {},
            "server": None,
        }


def recorder(environment, size: int) -> Recorder:
    """The process-wide recorder (one per Locust environment), made by the first user to start."""
    found = getattr(environment, "echo_recorder", None)
    if found is None:
        found = environment.echo_recorder = Recorder(environment, size)
    return found


def result(environment) -> dict | None:
    """The merged echo-load result: on the master from its workers' parts, elsewhere from this process."""
    if isinstance(environment.runner, MasterRunner):
        parts = list(getattr(environment, "echo_parts", {}).values())
    else:
        own = getattr(environment, "echo_recorder", None)
        parts = [own.part()] if own is not None else []
    parts = [part for part in parts if part["messages"] or part["errors"]]
    if not parts:
        return None
    merged = merge(parts) if len(parts) > 1 else finish(dict(parts[0]) | {"parts": 1})
    merged["processes"] = len(parts)
    return merged


@events.report_to_master.add_listener
def _attach(client_id: str, data: dict) -> None:
    environment = _current_environment()
    own = getattr(environment, "echo_recorder", None) if environment else None
    if own is not None:
        data[_KEY] = own.part()


@events.worker_report.add_listener
def _collect(client_id: str, data: dict) -> None:
    environment = _current_environment()
    if environment is not None and _KEY in data:
        environment.echo_parts = getattr(environment, "echo_parts", {})
        environment.echo_parts[client_id] = data[_KEY]


_environments: list = []  # the report events name no environment: this process's one, from `init`


@events.init.add_listener
def _remember(environment, **_) -> None:
    _environments.append(environment)
    problem = _bad_option(environment.parsed_options, environment.host)
    if problem:  # before any user starts: one line, exit status 2, as echo-load's own usage errors
        print(f"locust: error: {problem}", file=sys.stderr, flush=True)
        sys.exit(2)


def _bad_option(options, host: str | None) -> str:
    from echoclients.locust.user import parse_host

    if host:
        try:
            parse_host(host)
        except ValueError as exc:
            return str(exc)
    if options is None:
        return ""
    checks = (
        ("echo-size", options.echo_size, 1, 64 << 20),
        ("echo-iterations", options.echo_iterations, 0, 10**12),
        ("echo-timeout", options.echo_timeout, 0.001, 3600),
    )
    for name, value, low, high in checks:
        if not low <= value <= high:
            return f"--{name} must be between {low:,} and {high:,}, got {value:,}"
    return ""


def _current_environment():
    return _environments[-1] if _environments else None


@events.test_start.add_listener
def _stop_after_iterations(environment, **_) -> None:
    """With ``--echo-iterations``, end the test once every user has made its round trips (master or local)."""
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or not options or not options.echo_iterations:
        return
    target = options.echo_iterations * options.num_users

    def watch() -> None:
        while environment.runner.stats.total.num_requests < target:
            gevent.sleep(0.1)
        log.info("echo: all %d round trips done; stopping", target)
        environment.runner.quit()

    gevent.spawn(watch)


@events.quitting.add_listener
def _report(environment, **_) -> None:
    # A worker's options are the master's (Locust hands them over), --echo-result included: only the
    # master (or a lone local runner) reports and writes.
    merged = None if isinstance(environment.runner, WorkerRunner) else result(environment)
    if merged is None:
        return
    print("\n" + format_summary(merged), file=sys.stderr, flush=True)
    options = environment.parsed_options
    if options and options.echo_result:
        path = Path(options.echo_result)
        path.write_text(json.dumps(merged, indent=2) + "\n")
        # Each worker's own part beside it: `echo-load merge` of these must give the same result.
        for n, part in enumerate(getattr(environment, "echo_parts", {}).values(), 1):
            path.with_name(f"{path.stem}.worker-{n}{path.suffix}").write_text(json.dumps(part, indent=2) + "\n")
