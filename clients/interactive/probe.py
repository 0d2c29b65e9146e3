"""Health probe: one real echo round trip, exit 0 if it came back intact.

Used by the Docker HEALTHCHECK, so it imports nothing beyond the standard
library and starts fast::

    echo-probe                      # 127.0.0.1:$ECHOSERVER_PORT, else $PORT, else 8080
    echo-probe --host db --port 9101 --timeout 2
    echo-probe --send-proxy v2 --banner-lines 1
    echo-probe --host unix:/run/echo.sock
    echo-probe --tls --tls-ca ca.pem --port 8443    # or --tls-insecure

It reads the server's own environment, like the server does, so the image's
HEALTHCHECK needs no arguments whatever the server is configured with: with
ECHOSERVER_PROXY_PROTOCOL=required it first sends a PROXY protocol v2 LOCAL
header (what a load balancer's own health check sends: "no client behind
this connection"), and with ECHOSERVER_BANNER set it skips the banner line
before comparing the echo.

On failure it prints one line on stderr saying what failed and exits 1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import ssl
import sys
import time

from echoclients.interactive.dial import TLS_HINT, connect, describe, looks_like_tls, tls_context

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT = 3.0
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# Version 2, command LOCAL, family UNSPEC, no address block: the connection is
# the proxy's own (a health check), so the server keeps the real peer address.
PROXY_HEADERS = {
    "none": b"",
    "v1": b"PROXY UNKNOWN\r\n",
    "v2": PROXY_V2_SIGNATURE + b"\x20\x00\x00\x00",
}


class ProbeFailed(Exception):
    """The round trip did not complete; the message says which step failed."""


def probe(
    host: str,
    port: int,
    timeout: float,
    nonce: bytes,
    header: bytes = b"",
    banner_lines: int = 0,
    context: ssl.SSLContext | None = None,
) -> tuple[float, bytes]:
    """Send ``header`` then ``nonce`` and read the nonce back.

    First skips ``banner_lines`` lines the server sends on connect. Returns the
    round-trip time in seconds and the banner. The whole probe, connect
    included, shares one deadline.
    """
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    where = describe(host, port)
    try:
        sock = connect(host, port, timeout, context)
    except ssl.SSLError as exc:
        raise ProbeFailed(f"TLS with {where} failed: {exc.reason or exc}") from exc
    except OSError as exc:
        raise ProbeFailed(f"connect to {where} failed: {_describe(exc)}") from exc
    banner = echoed = b""
    with sock:
        try:
            _set_remaining(sock, deadline)
            sock.sendall(header + nonce)
            banner, echoed = _recv_lines(sock, banner_lines, deadline)
            if len(echoed) < len(nonce):
                echoed += _recv_exactly(sock, len(nonce) - len(echoed), deadline)
        except TimeoutError as exc:
            if banner.count(b"\n") < banner_lines:
                raise ProbeFailed(f"no banner from {where} within {timeout:g}s") from exc
            raise ProbeFailed(f"no echo from {where} within {timeout:g}s") from exc
        except OSError as exc:
            hint = f"; {TLS_HINT}" if context is None and looks_like_tls(banner, exc) else ""
            raise ProbeFailed(f"round trip to {where} failed: {_describe(exc)}{hint}") from exc
    if context is None and looks_like_tls(banner + echoed):
        raise ProbeFailed(f"{where} closed the connection without a reply; {TLS_HINT}")
    if echoed != nonce:
        raise ProbeFailed(f"echo from {where} differs: sent {len(nonce)} bytes, got {len(echoed)} ({echoed[:32]!r})")
    return time.monotonic() - started, banner


def make_nonce(size: int) -> bytes:
    """Random decimal digits ending in a newline.

    Digits are unchanged by an upper-casing handler and the newline completes
    a frame for a line-framed one, so every handler mode echoes it verbatim.
    """
    size = max(2, size)
    digits = "".join(secrets.choice("0123456789") for _ in range(size - 1))
    return digits.encode() + b"\n"


def _recv_lines(sock: socket.socket, lines: int, deadline: float) -> tuple[bytes, bytes]:
    """Read until ``lines`` newlines have arrived: (those lines, whatever came after them)."""
    data = b""
    while data.count(b"\n") < lines:
        _set_remaining(sock, deadline)
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    end = 0
    for _ in range(lines):
        newline = data.find(b"\n", end)
        if newline < 0:
            return data, b""
        end = newline + 1
    return data[:end], data[end:]


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
        raise TimeoutError("deadline passed")
    sock.settimeout(remaining)


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _port_from_env() -> int:
    """The server's own rule: ECHOSERVER_PORT, else a platform's PORT, else the default."""
    raw = os.environ.get("ECHOSERVER_PORT", "").strip() or os.environ.get("PORT", "").strip()
    return _port(raw) if raw else DEFAULT_PORT


def _banner_lines(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} must be between 0 and 1000")
    return value


def _proxy_header_from_env() -> str:
    """v2 where the server insists on a header; a server in optional mode takes plain traffic."""
    mode = os.environ.get("ECHOSERVER_PROXY_PROTOCOL", "").strip().lower()
    return "v2" if mode == "required" else "none"


def _banner_lines_from_env() -> int:
    return 1 if os.environ.get("ECHOSERVER_BANNER", "") else 0


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit 2, like every other echoserver tool."""

    def error(self, message: str):  # noqa: ANN201 - argparse's signature
        self.exit(2, f"echo-probe: error: {message} (see echo-probe --help)\n")


def _checked(parse, ok, what: str, out_of_range: str):
    """An argparse type: ``parse(text)``, kept if ``ok(value)``; ``what`` and ``out_of_range`` word the errors."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(out_of_range.format(text=text, value=value))
        return value

    return convert


_port = _checked(int, lambda v: 1 <= v <= 65535, "a port number", "{value} is not a port number (1-65535)")
_positive = _checked(
    float, lambda v: 0 < v <= 3600, "a number of seconds", "{text} must be more than 0 and at most 3600 seconds"
)
_nonce_size = _checked(
    int, lambda v: 2 <= v <= 1 << 20, "a number of bytes", "{value} must be between 2 and 1048576 bytes"
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog="echo-probe",
        description="Exit 0 if the echo server at HOST:PORT echoes a random nonce back intact.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="name, address or unix:/PATH (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"default: $ECHOSERVER_PORT, else $PORT, else {DEFAULT_PORT}",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT,
        help="seconds for the whole round trip (default: %(default)s)",
    )
    parser.add_argument("--size", type=_nonce_size, default=32, help="nonce bytes (default: %(default)s)")
    parser.add_argument("--tls", action="store_true", help="speak TLS (echoserver --tls-cert)")
    parser.add_argument("--tls-ca", default="", metavar="FILE", help="verify the server against this CA")
    parser.add_argument("--tls-insecure", action="store_true", help="do not verify the server's certificate")
    parser.add_argument(
        "--send-proxy",
        choices=sorted(PROXY_HEADERS),
        default=None,
        help="send a PROXY protocol LOCAL header first (default: v2 if "
        "$ECHOSERVER_PROXY_PROTOCOL is required, else none)",
    )
    parser.add_argument(
        "--banner-lines",
        type=_banner_lines,
        default=None,
        metavar="N",
        help="skip N lines the server sends on connect (default: 1 if $ECHOSERVER_BANNER is set, else 0)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the round-trip time")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        port = args.port if args.port is not None else _port_from_env()
    except (ValueError, argparse.ArgumentTypeError):
        print(
            f"echo-probe: error: ECHOSERVER_PORT or PORT is not a port number (1-65535): "
            f"{os.environ.get('ECHOSERVER_PORT') or os.environ.get('PORT')!r}",
            file=sys.stderr,
        )
        return 2
    if (args.tls_ca or args.tls_insecure) and not args.tls:
        print("echo-probe: error: --tls-ca and --tls-insecure only mean something with --tls", file=sys.stderr)
        return 2
    try:
        context = tls_context(args.tls_ca, args.tls_insecure) if args.tls else None
    except (OSError, ssl.SSLError) as exc:
        print(f"echo-probe: error: --tls-ca: cannot load {args.tls_ca!r}: {exc}", file=sys.stderr)
        return 2
    send_proxy = args.send_proxy or _proxy_header_from_env()
    banner_lines = args.banner_lines if args.banner_lines is not None else _banner_lines_from_env()
    nonce = make_nonce(args.size)
    try:
        elapsed, banner = probe(
            args.host,
            port,
            args.timeout,
            nonce,
            header=PROXY_HEADERS[send_proxy],
            banner_lines=banner_lines,
            context=context,
        )
    except ProbeFailed as exc:
        print(f"echo-probe: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        extras = [f"PROXY {send_proxy} header"] if send_proxy != "none" else []
        if banner:
            extras.append(f"banner {banner.decode(errors='replace').strip()!r}")
        detail = f" ({', '.join(extras)})" if extras else ""
        print(f"echo-probe: {describe(args.host, port)} ok in {elapsed * 1000:.2f} ms{detail}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
