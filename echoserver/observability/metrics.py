"""``--metrics-port``: Prometheus text at ``/metrics`` and a ``/healthz`` for load balancers.

The counters are not prometheus_client ``Counter`` objects updated per message:
they live in :mod:`echoserver.observability.stats`, cheap on the hot path and already summed
across fork children and workers through shared memory. A custom collector
turns a snapshot into metric families at scrape time. prometheus_client's own
multi-process mode would write one file per process ever started, which a
fork-per-connection server would turn into one file per connection.

CPU and RSS cover the whole process tree (supervisor, workers, fork children),
read with psutil at scrape time.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from echoserver.net.listener import BindError
from echoserver.observability.gil import gil_enabled
from echoserver.observability.httpd import HttpEndpoint, Response
from echoserver.observability.stats import ERROR_KINDS, FAULT_KINDS

log = logging.getLogger("echoserver.metrics")

_COUNTERS = {
    "accepted": ("connections_accepted", "Connections accepted."),
    "closed": ("connections_closed", "Connections closed, for whatever reason."),
    "idle_closed": ("connections_idle_closed", "Connections closed by --idle-timeout."),
    "rejected": ("connections_rejected", "Connections refused or dropped by the server."),
    "bytes_in": ("received_bytes", "Bytes received from clients."),
    "bytes_out": ("sent_bytes", "Bytes sent to clients."),
    "messages": ("messages", "Messages handled: chunks for echo/upper, lines for line."),
}


class EchoCollector:
    """Reads the server's counters at each scrape."""

    def __init__(self, snapshot: Callable[[], dict], backend: str, pid: int) -> None:
        self.snapshot = snapshot
        self.backend = backend
        self.pid = pid

    def collect(self):
        values = self.snapshot()
        for field, (name, help_) in _COUNTERS.items():
            yield CounterMetricFamily(f"echoserver_{name}", help_, value=values[field])
        yield GaugeMetricFamily("echoserver_connections_active", "Connections open now.", value=values["active"])
        errors = CounterMetricFamily("echoserver_errors", "Connection and accept errors, by kind.", labels=["kind"])
        for kind in ERROR_KINDS:
            errors.add_metric([kind], values[f"error_{kind}"])
        yield errors
        faults = CounterMetricFamily("echoserver_faults", "Injected faults, by kind.", labels=["kind"])
        for kind in FAULT_KINDS:
            faults.add_metric([kind], values[f"fault_{kind}"])
        yield faults
        proxied = CounterMetricFamily(
            "echoserver_proxied_connections",
            "Connections that arrived with a PROXY protocol header.",
            labels=["version"],
        )
        for version in (1, 2):
            proxied.add_metric([str(version)], values[f"proxied_v{version}"])
        yield proxied
        cpu, rss, count = _process_tree(self.pid)
        yield CounterMetricFamily("echoserver_process_cpu_seconds", "CPU time of the server's processes.", value=cpu)
        yield GaugeMetricFamily(
            "echoserver_process_resident_memory_bytes", "Resident memory of the server's processes.", value=rss
        )
        yield GaugeMetricFamily("echoserver_processes", "Processes the server runs now.", value=count)
        yield InfoMetricFamily("echoserver", "The server's backend.", value={"backend": self.backend})
        yield GaugeMetricFamily(
            "echoserver_gil_enabled",
            "1 while the GIL is on (always, on a default build), 0 on a free-threaded build running without it.",
            value=int(gil_enabled()),
        )


def _process_tree(pid: int) -> tuple[float, int, int]:
    cpu = rss = count = 0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0, 0
    for process in processes:
        try:
            times = process.cpu_times()
            cpu += times.user + times.system
            rss += process.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:
            pass
    return cpu, rss, count


class MetricsServer:
    """The metrics endpoint: ``/metrics``, ``/healthz``, 404 for anything else.

    Served by :class:`~echoserver.observability.httpd.HttpEndpoint`, so no peer can
    stall it or its owner: in a thread of its own (:meth:`start`), or polled by the
    ``--workers`` supervisor's loop (given ``epoll``, then :meth:`fileno` and
    :meth:`handle_ready`), which runs no thread so that under gevent no hub ever
    exists in the process that forks the workers.
    """

    def __init__(
        self,
        host: str,
        port: int,
        snapshot: Callable[[], dict],
        accepting: Callable[[], bool],
        backend: str,
        pid: int,
        epoll: Callable[[], Any] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EchoCollector(snapshot, backend, pid))
        self.accepting = accepting
        try:
            self.endpoint = HttpEndpoint(host, port, self.route, epoll=epoll)
        except socket.gaierror as exc:
            raise BindError(
                "metrics_host",
                f"--metrics-host {host!r} does not resolve: {exc.strerror}; give a name or address of this machine",
            ) from None
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BindError(
                    "metrics_port", f"port {port} is already in use; choose another --metrics-port"
                ) from None
            raise BindError("metrics_port", f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        self.port = self.endpoint.port

    def route(self, method: str, path: str) -> Response:
        if path == "/metrics":
            return Response("200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry))
        if path == "/healthz":
            ok = self.accepting()
            return Response(
                "200 OK" if ok else "503 Service Unavailable", "text/plain", b"ok\n" if ok else b"draining\n"
            )
        return Response("404 Not Found", "text/plain", b"not found: try /metrics or /healthz\n")

    def start(self) -> MetricsServer:
        self.endpoint.start()
        return self

    def fileno(self) -> int:
        return self.endpoint.fileno()

    def descriptors(self) -> list[int]:
        return self.endpoint.descriptors()

    def handle_ready(self) -> None:
        """Do what is ready without waiting; call when :meth:`fileno` is readable, and now and then."""
        self.endpoint.step(0.0)

    def stop(self) -> None:
        self.endpoint.stop()
