"""echo-probe: the one-shot echo round trip people (and the image's fallback health check) run.

Against loopback servers in this process: what it sends (a nonce that every
handler mode echoes verbatim, a PROXY LOCAL header where the server requires
one), what it skips (a banner), and the one line it prints when something fails.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
from dockertools import REPO

from echoclients.interactive import probe


class _OneShotServer:
    """A loopback server that answers each connection with ``reply(data)``."""

    def __init__(self, reply):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        with self.sock:
            conn, _ = self.sock.accept()
            with conn:
                data = conn.recv(4096)
                answer = self.reply(data)
                if answer is not None:
                    conn.sendall(answer)
                    time.sleep(0.2)


def test_probe_passes_when_the_nonce_comes_back():
    server = _OneShotServer(lambda data: data)
    assert probe.main(["--port", str(server.port), "--timeout", "3"]) == 0


def test_probe_reports_a_wrong_echo(capsys):
    server = _OneShotServer(lambda data: data[:-2] + b"?\n")
    assert probe.main(["--port", str(server.port)]) == 1
    assert "differs" in capsys.readouterr().err


def test_probe_reports_a_silent_server(capsys):
    server = _OneShotServer(lambda data: time.sleep(1.5))
    assert probe.main(["--port", str(server.port), "--timeout", "0.5"]) == 1
    assert "no echo" in capsys.readouterr().err


def test_probe_reports_a_refused_connection(capsys):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    assert probe.main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("echo-probe: connect to") and err.count("\n") == 1


def test_probe_takes_its_port_from_the_server_environment(monkeypatch):
    server = _OneShotServer(lambda data: data)
    monkeypatch.setenv("ECHOSERVER_PORT", str(server.port))
    monkeypatch.setenv("PORT", "1")  # ECHOSERVER_PORT wins, as in the server
    assert probe.main([]) == 0


def test_probe_takes_a_platforms_PORT_when_ECHOSERVER_PORT_is_unset(monkeypatch):
    server = _OneShotServer(lambda data: data)
    monkeypatch.delenv("ECHOSERVER_PORT", raising=False)
    monkeypatch.setenv("PORT", str(server.port))
    assert probe.main([]) == 0


class _ProxiedServer(_OneShotServer):
    """Like a replica behind HAProxy: wants a PROXY header, sends a banner, echoes the rest."""

    def __init__(self, header: bytes, banner: bytes = b""):
        self.seen: list[bytes] = []

        def reply(data: bytes):
            self.seen.append(data)
            if not data.startswith(header):
                return b""  # a server in required mode closes the connection
            return banner + data[len(header) :]

        super().__init__(reply)


def test_probe_sends_a_local_header_where_the_server_requires_one(monkeypatch):
    header = probe.PROXY_HEADERS["v2"]
    assert header == b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"  # v2, LOCAL, UNSPEC, no addresses
    server = _ProxiedServer(header)
    monkeypatch.setenv("ECHOSERVER_PROXY_PROTOCOL", "required")
    assert probe.main(["--port", str(server.port)]) == 0
    assert server.seen[0].startswith(header)


def test_probe_sends_no_header_unless_the_server_requires_one(monkeypatch):
    monkeypatch.setenv("ECHOSERVER_PROXY_PROTOCOL", "optional")
    server = _OneShotServer(lambda data: data if data[:1].isdigit() else b"")
    assert probe.main(["--port", str(server.port)]) == 0


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_probe_send_proxy_option(version):
    server = _ProxiedServer(probe.PROXY_HEADERS[version])
    assert probe.main(["--port", str(server.port), "--send-proxy", version]) == 0


def test_probe_skips_the_banner_line_when_the_server_sends_one(monkeypatch, capsys):
    server = _ProxiedServer(probe.PROXY_HEADERS["v2"], banner=b"replica 3f2a9c1b (asyncio)\n")
    monkeypatch.setenv("ECHOSERVER_PROXY_PROTOCOL", "required")
    monkeypatch.setenv("ECHOSERVER_BANNER", "replica {hostname} ({backend})")
    assert probe.main(["--port", str(server.port), "-v"]) == 0
    assert "banner 'replica 3f2a9c1b (asyncio)'" in capsys.readouterr().err
    # Without the skip, the banner is a wrong echo.
    server = _ProxiedServer(b"", banner=b"replica 3f2a9c1b (asyncio)\n")
    assert probe.main(["--port", str(server.port), "--banner-lines", "0"]) == 1
    assert "differs" in capsys.readouterr().err


def test_probe_nonce_survives_every_handler_mode():
    nonce = probe.make_nonce(32)
    assert len(nonce) == 32 and nonce.endswith(b"\n")
    assert nonce.upper() == nonce and nonce.count(b"\n") == 1


def test_probe_starts_without_importing_click():
    code = "import sys, echoclients.interactive.probe; sys.exit('click' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
