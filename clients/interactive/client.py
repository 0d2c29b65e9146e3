"""echo-client HOST PORT: type a line, see the reply. For people following a tutorial.

\b
  echo-client 127.0.0.1 8080
  > hello
  hello

Each line typed (newline included) is sent, and the reply is printed as soon
as that many bytes have come back; a server that answers with something else
(the ``upper`` handler, an error line) is shown as it is. End with Ctrl-D.
Exit status: 0 on a clean end, 1 if the connection fails, 2 for a usage error.
"""

from __future__ import annotations

import socket
import sys

import click

from echoserver.cli.usage import run_click


def round_trip(sock: socket.socket, line: bytes) -> bytes:
    """Send ``line``; read until as many bytes came back, or the server closed."""
    sock.sendall(line)
    reply = bytearray()
    while len(reply) < len(line):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return bytes(reply)


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, help=__doc__)
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for a reply.")
def command(host: str, port: int, timeout: float) -> int:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        click.echo(f"echo-client: cannot connect to {host}:{port}: {exc.strerror or exc}", err=True)
        return 1
    prompt = sys.stdin.isatty()
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if prompt:
            click.echo(f"connected to {host}:{port}; type a line, Ctrl-D to end", err=True)
        while True:
            if prompt:
                click.echo("> ", nl=False, err=True)
            line = sys.stdin.buffer.readline()
            if not line:
                return 0
            try:
                reply = round_trip(sock, line)
            except OSError as exc:
                click.echo(f"echo-client: {exc.strerror or exc}", err=True)
                return 1
            sys.stdout.buffer.write(reply if reply.endswith(b"\n") else reply + b"\n")
            sys.stdout.flush()
            if len(reply) < len(line):
                click.echo("echo-client: the server closed the connection", err=True)
                return 1


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_click(command, argv, "echo-client"))


if __name__ == "__main__":
    main()
