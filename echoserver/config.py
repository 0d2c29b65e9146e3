"""One frozen configuration object, built alike by the CLI, the environment and the Python API.

Validation lives here and nowhere else: the CLI turns a :class:`ConfigError` into a
one-line usage error, the Python API lets it propagate.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

HANDLERS = ("echo", "upper", "line")
CPU_WORK_ON = ("all", "marked")
HEAVY_MARKER = b"!"  # first byte of a message that asks for --cpu-work under --cpu-work-on marked
PROXY_MODES = ("off", "optional", "required")

KiB = 1024
MiB = 1024 * KiB
MAX_WORKERS = 1024


def option(default: Any, help: str, **click: Any) -> Any:
    """A config field that is also a command-line option: its default and help, written once.

    ``click`` holds what the annotation cannot say (``flags``, ``metavar``, ``choices``, ``type``,
    ``show_default``, ``cli_default``); echoserver/cli/options.py turns the field into ``--its-name``. Plain
    ``field(default=..., metadata={"help": ...})`` works the same way.
    """
    return field(default=default, metadata={"help": help, **click})


class ConfigError(ValueError):
    """An option value that cannot work; ``option`` names the field it is about."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server needs to know, whichever backend runs it.

    Field names are the CLI option names (``pool_size`` is ``--pool-size`` and
    ``ECHOSERVER_POOL_SIZE``), so an error about a field reads the same everywhere; each
    field's default and help text are the CLI's too (echoserver/cli/options.py).
    """

    backend: str = option(
        "asyncio", "Concurrency model: {backends} (see --list-backends).", flags=("-b",), metavar="NAME"
    )
    host: str = option("127.0.0.1", "Address to listen on; 0.0.0.0 or :: exposes the server to the network.")
    port: int = option(8080, "TCP port; 0 picks a free one (the ready line tells which).", flags=("-p",))
    # Several listeners, served by one backend instance. Empty: just --host and --port.
    bind: tuple[str, ...] = option(
        (),
        "Listen here instead of --host/--port; repeatable: HOST:PORT, [IPV6]:PORT, "
        "unix:/PATH.sock (ECHOSERVER_BIND: space-separated).",
        metavar="ADDRESS",
    )
    handler: str = option(
        "echo",
        "echo: every byte back; upper: ASCII upper-cased; line: whole newline-terminated lines.",
        choices=HANDLERS,
    )
    max_line: int = option(
        64 * KiB,
        "Longest line the line handler accepts (newline included); longer gets an error and a close.",
        type="size",
    )
    cpu_work: int = option(
        0, "Pure-Python iterations per message, holding the GIL: makes CPU-bound work visible.", metavar="N"
    )
    io_delay: float = option(
        0.0, "Simulated IO wait per message, in milliseconds, slept the backend's own way.", metavar="MS"
    )
    pool_size: int = option(64, "threadpool: worker threads; connections beyond them wait their turn.")
    max_children: int = option(256, "fork: most connection processes alive at once; more wait in the backlog.")
    max_connections: int = option(
        0, "Most connections served at once (0: no limit); more wait in the listen backlog.", metavar="N"
    )
    idle_timeout: float = option(
        0.0, "Close a connection that makes no progress for S seconds (0: never).", metavar="S"
    )
    grace: float = option(
        10.0, "On SIGTERM/SIGINT, how long connected clients get to finish before being cut.", metavar="S"
    )
    backlog: int = option(1024, "Listen backlog: connections the kernel queues before the server accepts them.")
    buffer_size: int = option(64 * KiB, "Bytes read from a connection at a time.", type="size")
    # The bound that keeps a client that never reads from making the server buffer without limit.
    write_buffer_limit: int = option(
        1 * MiB, "Unsent reply bytes per connection before the server stops reading from it.", type="size"
    )
    # Accepting processes (1: no supervisor); each runs the backend on the one shared listener.
    workers: int = option(
        1,
        "Processes accepting on the one listening socket, each running the backend, under a "
        "supervisor that restarts them; auto: one per available CPU. With fork: N accepting "
        "processes that each fork per connection.",
        type="workers",
    )
    reuse_port: bool = option(
        False,
        "With --workers: a listening socket per worker (SO_REUSEPORT, Linux), so the "
        "kernel spreads new connections evenly instead of giving a burst to whichever "
        "worker wakes first.",
    )
    # What deployments ask of an echo server: TLS, the PROXY protocol, a banner.
    tls_cert: str = option("", "Serve TLS with this certificate (PEM).", metavar="FILE")
    tls_key: str = option("", "The certificate's private key (PEM).", metavar="FILE")
    tls_client_ca: str = option("", "Require client certificates signed by this CA (mutual TLS).", metavar="FILE")
    proxy_protocol: str = option(
        "off",
        "Read the PROXY protocol v1/v2 header a load balancer prepends; optional: plain clients too.",
        choices=PROXY_MODES,
    )
    proxy_trusted: tuple[str, ...] = option(
        ("127.0.0.0/8", "::1/128"),
        "Peers allowed to send a PROXY header: CIDR networks or addresses, comma-"
        "separated or repeated (* for any). A header from any other peer closes the connection, and so does its "
        "lack under required. Unix-socket peers are local: trusted.",
        metavar="CIDR,...",
    )
    header_timeout: float = option(
        5.0, "Seconds, in all, a peer gets to send its PROXY header (independent of --idle-timeout).", metavar="S"
    )
    tls_handshake_timeout: float = option(
        10.0, "Seconds, in all, a peer gets to complete the TLS handshake.", metavar="S"
    )
    banner: str = option(
        "", "A line sent once on connect; {hostname} and {backend} are filled in. Off by default.", metavar="TEXT"
    )
    # Fault injection, for testing the clients and proxies in front of the server. Off by default.
    delay: tuple[float, float] = option(
        (0.0, 0.0),
        "Fault injection: wait MS (+/- JITTER) milliseconds before each reply.",
        type="delay",
        cli_default="0",
    )
    reset_probability: float = option(
        0.0, "Fault injection: abort the connection with an RST instead of replying, with probability P.", metavar="P"
    )
    trickle: int = option(
        0, "Fault injection: write replies at this many bytes per second.", type="size", metavar="BYTES_PER_S"
    )
    max_bytes_per_connection: int = option(
        0, "Fault injection: echo N bytes, then close the connection.", type="size", metavar="N"
    )
    metrics_port: int | None = option(
        None, "Serve Prometheus metrics at /metrics and a health check at /healthz (0: any free port).", metavar="PORT"
    )
    metrics_host: str = option("127.0.0.1", "Address of the metrics endpoint.")
    stats_interval: float = option(
        0.0, "Log connection, message and byte rates every S seconds (0: never).", metavar="S"
    )
    interpreters: int = option(
        0,
        "interpreters backend: subinterpreters accepting on the one listener, each with its "
        "own GIL (0: one per available CPU).",
        type="workers",
        metavar="N|auto",
    )
    cpu_work_on: str = option(
        "all",
        f"Which messages get --cpu-work: all, or marked: only those whose first byte is "
        f"{HEAVY_MARKER.decode()!r} (the mixed scenario: a few heavy clients among many light "
        "ones, told apart per message).",
        choices=CPU_WORK_ON,
    )

    def __post_init__(self) -> None:
        _check(self.port, 0, 65535, "port")
        object.__setattr__(self, "bind", tuple(self.bind))
        for spec in self.bind:
            parse_bind(spec)
        if not self.host:
            raise ConfigError("host", "must not be empty (use 127.0.0.1 for loopback, 0.0.0.0 for all interfaces)")
        if self.handler not in HANDLERS:
            raise ConfigError("handler", f"unknown handler {self.handler!r}; choose one of {', '.join(HANDLERS)}")
        _check(self.max_line, 1, 1 << 30, "max_line")
        _check(self.cpu_work, 0, 10**9, "cpu_work")
        _check(self.io_delay, 0, 3_600_000, "io_delay")
        _check(self.pool_size, 1, 100_000, "pool_size")
        _check(self.max_children, 1, 100_000, "max_children")
        _check(self.max_connections, 0, 10_000_000, "max_connections")
        _check(self.idle_timeout, 0, 10**7, "idle_timeout")
        _check(self.grace, 0, 10**6, "grace")
        _check(self.backlog, 1, 65535, "backlog")
        _check(self.buffer_size, 1, 64 * MiB, "buffer_size")
        _check(self.write_buffer_limit, 1, 1 << 30, "write_buffer_limit")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_key" if self.tls_cert else "tls_cert", "--tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("tls_client_ca", "mutual TLS needs --tls-cert and --tls-key too")
        for option in ("tls_cert", "tls_key", "tls_client_ca"):  # before binding: not "port in use" first
            path = getattr(self, option)
            if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
                state = "is not readable" if os.path.isfile(path) else "does not exist or is not a file"
                raise ConfigError(option, f"{path} {state}")
        if self.proxy_protocol not in PROXY_MODES:
            raise ConfigError("proxy_protocol", f"choose one of {', '.join(PROXY_MODES)}")
        object.__setattr__(self, "proxy_trusted", parse_networks(self.proxy_trusted))
        _check(self.header_timeout, 0.001, 3600, "header_timeout")
        _check(self.tls_handshake_timeout, 0.001, 3600, "tls_handshake_timeout")
        object.__setattr__(self, "delay", tuple(self.delay))
        if len(self.delay) != 2 or not 0 <= self.delay[1] <= self.delay[0] <= 3_600_000:
            shown = ":".join(f"{value:g}" for value in self.delay)
            raise ConfigError("delay", f"MS[:JITTER] with 0 <= JITTER <= MS <= 3600000, got {shown}")
        unknown = sorted(set(re.findall(r"{([^{}]*)}", self.banner)) - {"hostname", "backend"})
        if unknown:
            raise ConfigError(
                "banner", f"unknown placeholder {{{unknown[0]}}}; the banner fills in {{hostname}} and {{backend}}"
            )
        _check(self.reset_probability, 0, 1, "reset_probability")
        _check(self.trickle, 0, 1 << 40, "trickle")
        _check(self.max_bytes_per_connection, 0, 1 << 60, "max_bytes_per_connection")
        if self.metrics_port is not None:
            _check(self.metrics_port, 0, 65535, "metrics_port")
        _check(self.stats_interval, 0, 86400, "stats_interval")
        _check(self.interpreters, 0, MAX_WORKERS, "interpreters")
        if self.cpu_work_on not in CPU_WORK_ON:
            raise ConfigError("cpu_work_on", f"choose one of {', '.join(CPU_WORK_ON)}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(
                "workers",
                f"must be at least 1 and at most {MAX_WORKERS} (auto: one per available CPU), got {self.workers}",
            )
        self._check_reuse_port()

    def _check_reuse_port(self) -> None:
        if not self.reuse_port:
            return
        if self.workers < 2:
            raise ConfigError("reuse_port", "only means something with --workers 2 or more")
        if any(where[0] == "unix" for where in self.listen_addresses()):
            raise ConfigError("reuse_port", "spreads TCP listeners only; leave it out with unix: binds")

    def listen_addresses(self) -> list[tuple]:
        """``("tcp", host, port)`` or ``("unix", path)`` for every listener."""
        if not self.bind:
            return [("tcp", self.host, self.port)]
        return [parse_bind(spec) for spec in self.bind]

    @property
    def io_delay_s(self) -> float:
        return self.io_delay / 1000.0

    @property
    def faults(self) -> bool:
        return bool(self.delay[0] or self.reset_probability or self.trickle or self.max_bytes_per_connection)

    @property
    def paced(self) -> bool:
        """Whether replies take the slow path (a wait, a fault) rather than going straight back."""
        return bool(self.io_delay) or self.faults

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)


def parse_bind(spec: str) -> tuple:
    """``unix:/run/echo.sock`` -> ("unix", path); ``[::1]:8080`` / ``0.0.0.0:8080`` -> ("tcp", host, port)."""
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise ConfigError("bind", f"{spec!r} names no path; write unix:/path/to/echo.sock")
        return ("unix", path)
    host, sep, port = spec.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not host:
        raise ConfigError("bind", f"{spec!r} is not HOST:PORT, [IPV6]:PORT or unix:PATH")
    _check(int(port), 0, 65535, "bind")
    return ("tcp", host.strip("[]"), int(port))


def parse_networks(value: str | tuple[str, ...]) -> tuple[str, ...]:
    """``"10.0.0.0/8,::1"`` (or several such) -> normalised CIDR strings; ``*`` stands for any peer."""
    items = [item.strip() for part in ([value] if isinstance(value, str) else value) for item in part.split(",")]
    networks = []
    for item in filter(None, items):
        if item == "*":
            networks.append(item)
            continue
        try:
            networks.append(str(ipaddress.ip_network(item)))
        except ValueError as exc:
            raise ConfigError(
                "proxy_trusted", f"{item!r} is not an address or a network ({exc}); write e.g. 10.0.0.0/8,::1 or *"
            ) from None
    return tuple(networks)


def _check(value: float, low: float, high: float, option: str) -> None:
    if not low <= value <= high:
        raise ConfigError(option, f"must be between {low} and {high}, got {value}")
