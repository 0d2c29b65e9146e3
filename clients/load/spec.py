"""``LoadSpec``: everything one load run needs, validated once.

The CLI, ``echo-bench`` and the tests all build this one frozen object; an
impossible combination is a :class:`SpecError` here and nowhere else, and
the CLI turns it into a one-line usage error.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
from dataclasses import dataclass

from echoclients.load.payload import EXPECTS, PAYLOADS

PROXY_VERSIONS = ("v1", "v2")

ENGINES = ("epoll", "blocking")
DEFAULT_TIME_CAP = 3600.0
PORTS_PER_SOURCE = 10_000  # per local address: well under its ~28k ephemeral ports, where connect() stays quick
MAX_SOURCES = 250  # --requests without --duration still stops by itself


class SpecError(ValueError):
    """An option value that cannot work; ``option`` names it as the CLI spells it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"--{option}: {message}")
        self.option = option


@dataclass(frozen=True)
class LoadSpec:
    host: str = "127.0.0.1"
    port: int = 8080
    clients: int = 20
    threads: int = 0  # 0: one per usable CPU, at most one per client
    processes: int = 1
    duration: float | None = None  # seconds; None: 10, or the time cap with --requests
    requests: int = 0  # 0: run for --duration
    warmup: float | None = None  # None: 1 s with --duration, 0 with --requests
    size: int = 64
    payload: str = "random"
    pipeline: int = 1
    rate: float = 0.0  # messages/s in total; 0: closed loop
    connect_timeout: float = 5.0
    timeout: float = 10.0
    expect: str = "echo"
    engine: str = "epoll"
    backend: str = ""  # a label for the result; echo-load does not need to know
    server_pid: int = 0  # when given, the server's CPU and RSS are sampled over the window
    seed: int | None = None
    # What a connection does before its first message (clients/load/opening.py).
    tls: bool = False
    tls_ca: str = ""  # verify the server against this CA file instead of the system store
    tls_insecure: bool = False  # do not verify the server's certificate at all
    send_proxy: str = ""  # "v1" or "v2": send a PROXY protocol header first
    banner_lines: int = 0  # lines the server sends on connect, read and dropped before measuring
    # Many connections (docs/c100k.md): how fast to open them, and from which local addresses.
    connect_rate: float = 0.0  # connections/s in total; 0: all at once
    source_addresses: int = 0  # 127.0.0.2, .3, ... for a loopback target; 0: as many as the count needs

    def __post_init__(self) -> None:
        _check(self.port, 1, 65535, "port")
        _check(self.clients, 1, 1_000_000, "clients")
        _check(self.threads, 0, 100_000, "threads")
        _check(self.processes, 1, 1024, "processes")
        _check(self.requests, 0, 10**15, "requests")
        _check(self.size, 1, 64 << 20, "size")
        _check(self.pipeline, 1, 100_000, "pipeline")
        _check(self.rate, 0, 10**9, "rate")
        _check(self.connect_timeout, 0.001, 3600, "connect-timeout")
        _check(self.timeout, 0.001, 3600, "timeout")
        if self.duration is not None:
            _check(self.duration, 0.01, 10**7, "duration")
        if self.warmup is not None:
            _check(self.warmup, 0, 10**6, "warmup")
        if self.payload not in PAYLOADS:
            raise SpecError("payload", f"choose one of {', '.join(PAYLOADS)}")
        if self.expect not in EXPECTS:
            raise SpecError("expect", f"choose one of {', '.join(EXPECTS)}")
        if self.engine not in ENGINES:
            raise SpecError("engine", f"choose one of {', '.join(ENGINES)}")
        if self.processes > self.clients:
            raise SpecError("processes", f"{self.processes} processes for {self.clients} clients leaves some idle")
        if self.engine == "blocking" and (self.rate or self.pipeline > 1):
            raise SpecError("engine", "the blocking engine is closed loop with one message in flight")
        _check(self.banner_lines, 0, 1000, "banner-lines")
        if self.send_proxy not in ("", *PROXY_VERSIONS):
            raise SpecError("send-proxy", f"choose one of {', '.join(PROXY_VERSIONS)}")
        self._check_tls()
        _check(self.connect_rate, 0, 10**7, "connect-rate")
        _check(self.source_addresses, 0, MAX_SOURCES, "source-addresses")

    def sources(self, family: int, sockaddr: tuple) -> list[str] | None:
        """Local addresses to spread the connections over, or ``None`` to let the kernel choose.

        One source address reaches one destination from ~28k ephemeral ports
        (32768-60999 here); past that, connects fail with EADDRNOTAVAIL. On
        loopback every 127.x.y.z is local, so more addresses are free to take.
        """
        loopback = family == socket.AF_INET and sockaddr[0].startswith("127.")
        if self.source_addresses and not loopback:
            raise SpecError("source-addresses", "only works against a 127.0.0.0/8 (IPv4 loopback) target")
        count = self.source_addresses or (-(-self.clients // PORTS_PER_SOURCE) if loopback else 1)
        if count <= 1 and not self.source_addresses:
            return None
        return [f"127.0.{(n + 2) // 256}.{(n + 2) % 256}" for n in range(count)]

    def _check_tls(self) -> None:
        for option, given in (("tls-ca", self.tls_ca), ("tls-insecure", self.tls_insecure)):
            if given and not self.tls:
                raise SpecError(option, "only means something with --tls")
        if self.tls_ca and self.tls_insecure:
            raise SpecError("tls-insecure", "verifies nothing, so a --tls-ca would be ignored; give one or the other")
        if self.tls_ca:
            try:
                ssl.create_default_context(cafile=self.tls_ca)
            except (OSError, ssl.SSLError) as exc:
                raise SpecError("tls-ca", f"cannot load {self.tls_ca!r}: {exc}") from None

    @property
    def run_seconds(self) -> float:
        """The measured window's length, or the time cap of a --requests run."""
        if self.duration is not None:
            return self.duration
        return DEFAULT_TIME_CAP if self.requests else 10.0

    @property
    def warmup_seconds(self) -> float:
        if self.warmup is not None:
            return self.warmup
        return 0.0 if self.requests else 1.0

    @property
    def thread_count(self) -> int:
        """Worker threads in all; ``blocking`` is one per connection by definition."""
        if self.engine == "blocking":
            return self.clients
        wanted = self.threads or len(os.sched_getaffinity(0))
        return max(self.processes, min(wanted, self.clients))

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def resolve(self) -> tuple[int, tuple]:
        """``(family, sockaddr)``; a host that does not resolve is a usage error."""
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise SpecError("host", f"cannot resolve {self.host!r}: {exc}") from None
        family, _, _, _, sockaddr = infos[0]
        return family, sockaddr

    def replace(self, **changes: object) -> "LoadSpec":
        return dataclasses.replace(self, **changes)


def _check(value: float, low: float, high: float, option: str) -> None:
    if not low <= value <= high:
        raise SpecError(option, f"must be between {low:g} and {high:g}, got {value:g}")


def split(total: int, parts: int) -> list[int]:
    """``total`` shared as evenly as possible into ``parts`` (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
