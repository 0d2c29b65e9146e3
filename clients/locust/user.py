"""``EchoUser``: one persistent TCP connection per Locust user, every echoed byte checked.

Each task is one round trip: send ``--echo-size`` bytes of this user's stream,
read until the whole echo is back, compare it with what was sent, and report
it to Locust's ``request`` event (a mismatch or a socket error is a failure,
with the reason). The same round trip also goes, in nanoseconds, into this
process's HDR histogram (:mod:`echoclients.locust.merge`), because Locust's
own statistics keep response times rounded to two significant digits of a
millisecond: a 60 us round trip and a 140 us one are both "0.1 ms" there.
"""

from __future__ import annotations

import functools
import itertools
import socket
import time

from locust import User, constant, events, task
from locust.exception import StopUser

from echoclients.load.connection import error_kind
from echoclients.load.payload import PayloadPool
from echoclients.locust import merge

_user_numbers = itertools.count()


@functools.lru_cache(maxsize=4)
def _pool(size: int) -> PayloadPool:
    """One payload pool per process and message size, shared by its users (as echo-load's threads share one)."""
    return PayloadPool(size)


class EchoMismatch(Exception):
    """The echo differed from what was sent (a Locust failure, and a mismatch in the echo-load result)."""


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--echo-size", type=int, default=64, help="Bytes per message (echo round trip).")
    parser.add_argument(
        "--echo-iterations",
        type=int,
        default=0,
        help="Round trips per user, then it stops; the test ends when all are done (0: no limit).",
    )
    parser.add_argument("--echo-timeout", type=float, default=10.0, help="Seconds a connect or a reply may take.")
    parser.add_argument("--echo-result", default="", help="Write the exact (HDR) result here as echo-load JSON.")


def parse_host(host: str | None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``tcp://host:port`` (Locust's --host) as an address."""
    text = (host or "").removeprefix("tcp://").rstrip("/")
    name, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not name:
        raise ValueError(f"--host must be HOST:PORT of an echo server, got {host!r}")
    return name.strip("[]"), int(port)


class EchoUser(User):
    """A user holding one connection to the echo server given by ``--host``, for its whole life."""

    abstract = True
    wait_time = constant(0)  # a closed loop, like echo-load's default; subclass to add think time

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.size = options.echo_size if options else 64
        self.iterations = options.echo_iterations if options else 0
        self.timeout = options.echo_timeout if options else 10.0
        self.address = parse_host(self.host or self.environment.host)
        # Users of different workers send different bytes: a server that crossed streams shows.
        self.number = getattr(self.environment.runner, "worker_index", 0) * 100_000 + next(_user_numbers)
        stream = _pool(self.size).stream(self.number)
        self.out, self.base, self.period = memoryview(stream.sent), stream.base, stream.period
        self.offset = 0
        self.done = 0
        self.buffer = bytearray(self.size)
        self.sock: socket.socket | None = None
        self.recorder = merge.recorder(self.environment, self.size)

    def on_stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def connect(self) -> socket.socket:
        started = time.perf_counter_ns()
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.recorder.connected(time.perf_counter_ns() - started)
        return sock

    @task
    def echo(self) -> None:
        if self.iterations and self.done >= self.iterations:
            raise StopUser()
        self.done += 1
        size, start = self.size, self.base + self.offset
        message = self.out[start : start + size]
        started = time.perf_counter_ns()
        failure: Exception | None = None
        try:
            if self.sock is None:
                self.sock = self.connect()
                started = time.perf_counter_ns()  # the connect is not part of the round trip
            self.sock.sendall(message)
            view, got = memoryview(self.buffer), 0
            while got < size:
                n = self.sock.recv_into(view[got:])
                if not n:
                    raise ConnectionResetError("the server closed the connection")
                got += n
            if self.buffer != message:
                failure = EchoMismatch(f"echo differs from the {size} bytes sent")
        except OSError as exc:
            failure = exc
            if self.sock is not None:
                self.sock.close()
                self.sock = None
        elapsed = time.perf_counter_ns() - started
        self.offset = (self.offset + size) % self.period
        self.recorder.record(self.number, elapsed, failure if failure is None else self.kind(failure))
        self.environment.events.request.fire(
            request_type="echo",
            name=f"{size} B",
            response_time=elapsed / 1e6,
            response_length=size if failure is None else 0,
            exception=failure,
            context={},
        )

    @staticmethod
    def kind(failure: Exception) -> str:
        return "mismatch" if isinstance(failure, EchoMismatch) else error_kind(failure)
