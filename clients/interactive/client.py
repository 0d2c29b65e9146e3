"""echo-client HOST PORT: type a line, see the reply. For people following a tutorial.

\b
  echo-client 127.0.0.1 8080
  > hello
  hello
  echo-client unix:/run/echo.sock              # a Unix socket listener
  echo-client --tls --tls-ca ca.pem localhost 8443

Each line typed (newline included) is sent, and the reply is printed as soon
as that many bytes have come back; a server that answers with something else
(the ``upper`` handler, an error line) is shown as it is. End with Ctrl-D.
Exit status: 0 on a clean end, 1 if the connection fails, 2 for a usage error.
"""

from __future__ import annotations

import socket
import ssl
import sys

import click

from echoclients.interactive.dial import TLS_HINT, connect, describe, looks_like_tls, tls_context
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
@click.argument("port", type=click.IntRange(1, 65535), required=False)
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for a reply.")
@click.option("--tls", is_flag=True, help="Speak TLS (echoserver --tls-cert).")
@click.option(
    "--tls-ca", default="", metavar="FILE", help="Verify the server against this CA (default: the system store)."
)
@click.option("--tls-insecure", is_flag=True, help="Do not verify the server's certificate (self-signed servers).")
def command(host: str, port: int | None, timeout: float, tls: bool, tls_ca: str, tls_insecure: bool) -> int:
    if port is None and not host.startswith("unix:"):
        raise click.UsageError("give a PORT after the host (or a unix:/PATH target)")
    if (tls_ca or tls_insecure) and not tls:
        raise click.UsageError("--tls-ca and --tls-insecure only mean something with --tls")
    where = describe(host, port or 0)
    try:
        context = tls_context(tls_ca, tls_insecure) if tls else None
    except (OSError, ssl.SSLError) as exc:
        raise click.UsageError(f"--tls-ca: cannot load {tls_ca!r}: {exc}") from None
    try:
        sock = connect(host, port or 0, timeout, context)
    except ssl.SSLError as exc:
        click.echo(f"echo-client: TLS with {where} failed: {exc.reason or exc}", err=True)
        return 1
    except OSError as exc:
        click.echo(f"echo-client: cannot connect to {where}: {exc.strerror or exc}", err=True)
        return 1
    prompt = sys.stdin.isatty()
    first = True
    with sock:
        if prompt:
            click.echo(f"connected to {where}{' (TLS)' if tls else ''}; type a line, Ctrl-D to end", err=True)
        while True:
            if prompt:
                click.echo("> ", nl=False, err=True)
            line = sys.stdin.buffer.readline()
            if not line:
                if prompt:
                    click.echo("", err=True)  # Ctrl-D left the cursor after the prompt
                return 0
            try:
                reply = round_trip(sock, line)
            except TimeoutError:
                hint = (
                    " (a TLS listener waits for a whole TLS record: if it speaks TLS, add --tls)"
                    if first and not tls
                    else ""
                )
                click.echo(f"echo-client: no reply within {timeout:g} s{hint}", err=True)
                return 1
            except OSError as exc:
                hint = f"; {TLS_HINT}" if first and not tls and looks_like_tls(b"", exc) else ""
                click.echo(f"echo-client: {exc.strerror or exc}{hint}", err=True)
                return 1
            if first and not tls and len(reply) < len(line) and looks_like_tls(reply):
                click.echo(f"echo-client: {where} closed the connection without a reply; {TLS_HINT}", err=True)
                return 1
            first = False
            sys.stdout.buffer.write(reply if reply.endswith(b"\n") else reply + b"\n")
            sys.stdout.flush()
            if len(reply) < len(line):
                click.echo("echo-client: the server closed the connection", err=True)
                return 1


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_click(command, argv, "echo-client"))


if __name__ == "__main__":
    main()
