"""Health probe: one real echo round trip, exit 0 if it came back intact.

Used by the Docker HEALTHCHECK, so it imports nothing beyond the standard
library and starts fast::

    echo-probe                      # 127.0.0.1:$ECHOSERVER_PORT (default 8080)
    echo-probe --host db --port 9101 --timeout 2

On failure it prints one line on stderr saying what failed and exits 1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import time

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT = 3.0


class ProbeFailed(Exception):
    """The round trip did not complete; the message says which step failed."""


def probe(host: str, port: int, timeout: float, nonce: bytes) -> float:
    """Send ``nonce`` and read it back; return the round-trip time in seconds.

    The whole probe, connect included, shares one deadline.
    """
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ProbeFailed(f"connect to {host}:{port} failed: {_describe(exc)}") from exc
    with sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _set_remaining(sock, deadline)
            sock.sendall(nonce)
            echoed = _recv_exactly(sock, len(nonce), deadline)
        except socket.timeout as exc:
            raise ProbeFailed(f"no echo from {host}:{port} within {timeout:g}s") from exc
        except OSError as exc:
            raise ProbeFailed(f"round trip to {host}:{port} failed: {_describe(exc)}") from exc
    if echoed != nonce:
        raise ProbeFailed(
            f"echo from {host}:{port} differs: sent {len(nonce)} bytes, "
            f"got {len(echoed)} ({echoed[:32]!r})"
        )
    return time.monotonic() - started


def make_nonce(size: int) -> bytes:
    """Random decimal digits ending in a newline.

    Digits are unchanged by an upper-casing handler and the newline completes
    a frame for a line-framed one, so every handler mode echoes it verbatim.
    """
    size = max(2, size)
    digits = "".join(secrets.choice("0123456789") for _ in range(size - 1))
    return digits.encode() + b"\n"


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks = []
    received = 0
    while received < size:
        _set_remaining(sock, deadline)
        chunk = sock.recv(size - received)
        if not chunk:
            break  # peer closed early; the caller reports the short echo
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


def _set_remaining(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("deadline passed")
    sock.settimeout(remaining)


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _port_from_env() -> int:
    raw = os.environ.get("ECHOSERVER_PORT", "")
    return int(raw) if raw.strip() else DEFAULT_PORT


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="echo-probe",
        description="Exit 0 if the echo server at HOST:PORT echoes a random nonce back intact.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="default: %(default)s")
    parser.add_argument(
        "--port", type=int, default=None,
        help=f"default: $ECHOSERVER_PORT, else {DEFAULT_PORT}",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT,
        help="seconds for the whole round trip (default: %(default)s)",
    )
    parser.add_argument("--size", type=int, default=32, help="nonce bytes (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the round-trip time")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        port = args.port if args.port is not None else _port_from_env()
    except ValueError:
        print(f"echo-probe: ECHOSERVER_PORT is not a port number: "
              f"{os.environ.get('ECHOSERVER_PORT')!r}", file=sys.stderr)
        return 1
    nonce = make_nonce(args.size)
    try:
        elapsed = probe(args.host, port, args.timeout, nonce)
    except ProbeFailed as exc:
        print(f"echo-probe: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        print(f"echo-probe: {args.host}:{port} ok in {elapsed * 1000:.2f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
