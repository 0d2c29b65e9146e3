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
from typing import Any

from echoclients.load import hotloop
from echoclients.load.payload import EXPECTS, PAYLOADS
from echoserver.config import option

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
    """One load run. Each field is an ``echo-load`` option of the same name, with this default and help."""

    host: str = option("127.0.0.1", "Server address (name, IPv4 or IPv6), or unix:/PATH.")
    port: int = option(8080, "", flags=("-p",))
    clients: int = option(20, "Concurrent connections.", flags=("-c",))
    threads: int = option(
        0,
        "Worker threads in all, each multiplexing its share of the connections (0: one per usable CPU).",
        flags=("-t",),
    )
    processes: int = option(1, "Spread the threads over this many processes (GILs).")
    duration: float | None = option(None, "Seconds measured  [default: 10]", flags=("-d",))
    requests: int = option(0, "Stop after this many replies instead (0: use --duration).", flags=("-n",))
    warmup: float | None = option(None, "Seconds run but not counted  [default: 1, 0 with --requests]")
    size: int = option(64, "Bytes per message (65536, 64k, 64KiB, 1MiB).", flags=("-s",), type="size")
    payload: str = option(
        "random",
        "ascii: letters and digits, each message ending in a newline (works with "
        "--handler line); marked: ascii, each message starting with '!' (heavy work "
        "for a server with --cpu-work-on marked).",
        choices=PAYLOADS,
    )
    pipeline: int = option(1, "Messages in flight per connection (closed loop).")
    rate: float = option(0.0, "Open loop: messages/s in total, latency from intended send times.")
    connect_timeout: float = option(5.0, "Seconds a connect may take.")
    timeout: float = option(10.0, "Seconds a reply may take before it counts as an error.")
    expect: str = option("echo", "What the server sends back.", choices=EXPECTS)
    engine: str = option("epoll", "blocking: the tutorial client, one blocking thread per connection.", choices=ENGINES)
    hot_loop: str = option(
        "auto",
        "compiled: the closed loop's common case in C (built at install time); python: all in Python; "
        "auto: compiled where it applies (one message in flight, no --rate, no --tls).",
        choices=hotloop.HOT_LOOPS,
    )
    backend: str = option("", "Label the result with the server's backend name.")
    server_pid: int = option(0, "Sample this local server's CPU and memory over the window.")
    seed: int | None = option(None, "Seed the payload (default: random).")
    # What a connection does before its first message (clients/load/opening.py).
    tls: bool = option(False, "Speak TLS; connect_us then includes the handshake.")
    tls_ca: str = option(
        "", "Verify the server against this CA  [default: the system store]", metavar="FILE", show_default=False
    )
    tls_insecure: bool = option(False, "Do not verify the server's certificate (self-signed servers).")
    send_proxy: str = option(
        "",
        "Send a PROXY protocol header first (source: this connection, destination: the server).",
        choices=PROXY_VERSIONS,
    )
    banner_lines: int = option(0, "Read and drop this many lines the server sends on connect (echoserver --banner: 1).")
    reconnect: bool = option(
        False,
        "Replace a connection the server closes or resets, and go on measuring (faults "
        "are still counted, and exit status 1).",
    )
    # Many connections (docs/c100k.md): how fast to open them, and from which local addresses.
    connect_rate: float = option(0.0, "Open at most this many connections a second, in total (0: all at once).")
    source_addresses: int = option(
        0, "Connect from 127.0.0.2, .3, ... (loopback targets; 0: one per 10,000 connections)."
    )

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
        if self.engine == "blocking" and self.reconnect:
            raise SpecError("reconnect", "needs the default engine (epoll)")
        if self.engine == "blocking" and (self.rate or self.pipeline > 1):
            raise SpecError("engine", "the blocking engine is closed loop with one message in flight")
        _check(self.banner_lines, 0, 1000, "banner-lines")
        self._check_hot_loop()
        if self.unix_path is not None:
            if not self.unix_path:
                raise SpecError("host", "unix: needs a path, e.g. --host unix:/run/echo.sock")
            if self.engine == "blocking":
                raise SpecError("engine", "the blocking engine speaks TCP only; use the default engine for unix:")
            if self.send_proxy:
                raise SpecError("send-proxy", "a PROXY header carries TCP addresses; a unix: target has none")
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

    def _check_hot_loop(self) -> None:
        if self.hot_loop not in hotloop.HOT_LOOPS:
            raise SpecError("hot-loop", f"choose one of {', '.join(hotloop.HOT_LOOPS)}")
        if problem := hotloop.environment_error():
            raise SpecError("hot-loop", f"{problem} (or unset it)")
        if self.hot_loop != "compiled":
            return
        if not hotloop.applies(self):
            raise SpecError(
                "hot-loop", "compiled runs the epoll engine's closed loop with --pipeline 1, without --rate or --tls"
            )
        if not hotloop.available():
            raise SpecError(
                "hot-loop",
                "this install has no compiled loop (no C compiler when it was installed, or "
                f"{hotloop.ENVIRONMENT}=python); reinstall where gcc is present, or use auto",
            )

    def _check_tls(self) -> None:
        for name, given in (("tls-ca", self.tls_ca), ("tls-insecure", self.tls_insecure)):
            if given and not self.tls:
                raise SpecError(name, "only means something with --tls")
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
    def unix_path(self) -> str | None:
        """The path of a ``--host unix:/PATH`` target (``--port`` is ignored then), else None."""
        return self.host[len("unix:") :] if self.host.startswith("unix:") else None

    @property
    def target(self) -> str:
        if self.unix_path is not None:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def resolve(self) -> tuple[int, Any]:
        """``(family, sockaddr)``; a host that does not resolve is a usage error."""
        if self.unix_path is not None:
            return socket.AF_UNIX, self.unix_path
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise SpecError("host", f"cannot resolve {self.host!r}: {exc}") from None
        family, _, _, _, sockaddr = infos[0]
        return family, sockaddr

    def replace(self, **changes: Any) -> LoadSpec:
        return dataclasses.replace(self, **changes)


def _check(value: float, low: float, high: float, option: str) -> None:
    if not low <= value <= high:
        raise SpecError(option, f"must be between {number(low)} and {number(high)}, got {number(value)}")


def number(value: float) -> str:
    """``1,000,000`` and ``0.5``, never ``1e+06``: what a person reads at a glance."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.6g}" if abs(value) < 1e15 else f"{value:g}"


def split(total: int, parts: int) -> list[int]:
    """``total`` shared as evenly as possible into ``parts`` (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
