"""One frozen configuration object, built alike by the CLI, the environment and the Python API.

Validation lives here and nowhere else: the CLI turns a :class:`ConfigError` into a
one-line usage error, the Python API lets it propagate.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

HANDLERS = ("echo", "upper", "line")
PROXY_MODES = ("off", "optional", "required")

KiB = 1024
MiB = 1024 * KiB
MAX_WORKERS = 1024


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
    ``ECHOSERVER_POOL_SIZE``), so an error about a field reads the same everywhere.
    """

    backend: str = "asyncio"
    host: str = "127.0.0.1"
    port: int = 8080
    # Several listeners, served by one backend instance: "HOST:PORT", "[::1]:PORT" or
    # "unix:/path.sock". Empty: just --host and --port.
    bind: tuple[str, ...] = ()
    handler: str = "echo"
    max_line: int = 64 * KiB
    cpu_work: int = 0
    io_delay: float = 0.0  # milliseconds
    pool_size: int = 64
    max_children: int = 256
    max_connections: int = 0  # 0: unlimited
    idle_timeout: float = 0.0  # seconds, 0: never
    grace: float = 10.0  # seconds given to connections to finish on shutdown
    backlog: int = 1024
    buffer_size: int = 64 * KiB
    # How much reply data a connection may have queued but unsent before the server
    # stops reading from it: the bound that keeps a client that never reads from
    # making the server buffer without limit.
    write_buffer_limit: int = 1 * MiB
    # What deployments ask of an echo server: TLS, the PROXY protocol, a banner.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""  # set: clients must present a certificate signed by this CA (mutual TLS)
    proxy_protocol: str = "off"
    # Peers allowed to send a PROXY header (CIDR networks, or "*" for any); a header
    # from anyone else closes the connection. Unix-socket peers are local, so trusted.
    proxy_trusted: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    header_timeout: float = 5.0  # seconds, in all, for the PROXY header to arrive
    tls_handshake_timeout: float = 10.0  # seconds, in all, for the TLS handshake
    banner: str = ""  # sent once on connect; {hostname} and {backend} are filled in
    # Fault injection, for testing the clients and proxies in front of the server. Off by default.
    delay: tuple[float, float] = (0.0, 0.0)  # milliseconds before each reply, and +/- jitter
    reset_probability: float = 0.0  # per reply: abort the connection with an RST instead
    trickle: int = 0  # bytes per second at which replies are written (0: at once)
    max_bytes_per_connection: int = 0  # echo this many bytes, then close (0: no limit)
    metrics_port: int | None = None  # None: no metrics endpoint; 0: any free port
    metrics_host: str = "127.0.0.1"
    stats_interval: float = 0.0  # seconds between stats log lines, 0: none
    # Accepting processes (1: no supervisor); each runs the backend on the one shared listener.
    workers: int = 1

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
        if self.proxy_protocol not in PROXY_MODES:
            raise ConfigError("proxy_protocol", f"choose one of {', '.join(PROXY_MODES)}")
        object.__setattr__(self, "proxy_trusted", parse_networks(self.proxy_trusted))
        _check(self.header_timeout, 0.001, 3600, "header_timeout")
        _check(self.tls_handshake_timeout, 0.001, 3600, "tls_handshake_timeout")
        object.__setattr__(self, "delay", tuple(self.delay))
        if len(self.delay) != 2 or not 0 <= self.delay[1] <= self.delay[0] <= 3_600_000:
            raise ConfigError("delay", f"MS[:JITTER] with 0 <= JITTER <= MS, got {self.delay}")
        _check(self.reset_probability, 0, 1, "reset_probability")
        _check(self.trickle, 0, 1 << 40, "trickle")
        _check(self.max_bytes_per_connection, 0, 1 << 60, "max_bytes_per_connection")
        if self.metrics_port is not None:
            _check(self.metrics_port, 0, 65535, "metrics_port")
        _check(self.stats_interval, 0, 86400, "stats_interval")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError("workers", f"must be at least 1 and at most {MAX_WORKERS} (auto: one per available CPU), got {self.workers}")

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

    def replace(self, **changes: object) -> "ServerConfig":
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
    """``"10.0.0.0/8,::1"`` (or a tuple of such) -> normalised CIDR strings; ``*`` stands for any peer."""
    items = value.split(",") if isinstance(value, str) else value
    networks = []
    for item in (item.strip() for item in items):
        if item == "*":
            networks.append(item)
            continue
        try:
            networks.append(str(ipaddress.ip_network(item)))
        except ValueError as exc:
            raise ConfigError("proxy_trusted", f"{item!r} is not an address or a network ({exc}); "
                                               "write e.g. 10.0.0.0/8,::1 or *") from None
    return tuple(networks)


def _check(value: float, low: float, high: float, option: str) -> None:
    if not low <= value <= high:
        raise ConfigError(option, f"must be between {low} and {high}, got {value}")
