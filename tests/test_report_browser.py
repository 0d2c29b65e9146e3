"""report.html as a colleague opens it: in a real browser (headless Chromium), offline.

The page is loaded over the DevTools protocol, so the test sees what a person
would: every console message and uncaught exception, every failed load (the
browser is told to refuse the network, so a CDN link would fail here too),
and whether each chart image decoded to real pixels. A screenshot is left in
the test's tmp folder for a human to look at.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
    "--proxy-server=127.0.0.1:9",
    "--window-size=1400,1000",
)  # any network request fails at once


class DevTools:
    """Just enough of a WebSocket client (RFC 6455: masked text frames out, plain frames in) for CDP."""

    def __init__(self, url: str) -> None:
        parts = urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(4096)
        assert response.startswith(b"HTTP/1.1 101"), response[:100]
        self.buffer = response.split(b"\r\n\r\n", 1)[1]
        self.next_id, self.events = 0, []

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _frame(self) -> dict:
        message = b""
        while True:
            head = self._read(2)
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self._read(2), "big")
            elif length == 127:
                length = int.from_bytes(self._read(8), "big")
            message += self._read(length)
            if head[0] & 0x80:  # FIN
                return json.loads(message)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x81]) + (
            bytes([0x80 | length])
            if length < 126
            else bytes([0x80 | 126]) + length.to_bytes(2, "big")
            if length < 65536
            else bytes([0x80 | 127]) + length.to_bytes(8, "big")
        )
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            message = self._frame()
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self.events):
            assert time.monotonic() < deadline, f"no {method} within {timeout}s"
            self.events.append(self._frame())


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="echo-report-chromium-"))
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and len(active.read_text().split()) == 2):
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not open DevTools"
            time.sleep(0.05)
        port = int(active.read_text().split()[0])
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever the env says
        with direct.open(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
            page = next(t for t in json.load(reply) if t["type"] == "page")
        yield DevTools(page["webSocketDebuggerUrl"])
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def open_page(tools: DevTools, path: Path) -> tuple[list[str], dict]:
    """Load ``path``; (every console error, exception and failed load, what the page's images look like)."""
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.call(f"{domain}.enable")
    tools.call("Page.navigate", url=path.as_uri())
    tools.wait_for("Page.loadEventFired")
    state = tools.call(
        "Runtime.evaluate",
        returnByValue=True,
        expression="""JSON.stringify({
        images: [...document.images].map(i => ({id: i.id, ok: i.complete && i.naturalWidth > 0,
                                               width: i.naturalWidth, src: i.src.slice(0, 30)})),
        tables: document.querySelectorAll('table').length,
        rows: document.querySelectorAll('#results tbody tr').length,
        text: document.body.innerText})""",
    )["result"]["value"]
    problems = []
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning", "assert"):
            problems.append(f"console.{params['type']}: {params['args']}")
        elif method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            problems.append(f"log: {params['entry']['text']}")
        elif method == "Network.loadingFailed":
            problems.append(f"load failed: {params.get('errorText')}")
    return problems, json.loads(state)


def screenshot(tools: DevTools, path: Path) -> bytes:
    metrics = tools.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = tools.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1},
    )
    data = base64.b64decode(shot["data"])
    path.write_bytes(data)
    return data


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "echoclients.bench.cli",
            "--backend",
            "thread",
            "--backend",
            "asyncio",
            "--repeat",
            "2",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "--clients",
            "4",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return out / "report.html"


def test_the_report_renders_offline_with_its_charts_and_no_errors(browser, report):
    pytest.importorskip("matplotlib")
    problems, page = open_page(browser, report)
    assert problems == []
    assert {image["id"] for image in page["images"]} == {"chart-results", "chart-latency_cdf", "chart-timeline"}
    assert all(image["ok"] and image["width"] > 500 for image in page["images"]), page["images"]
    assert all(image["src"].startswith("data:image/png") for image in page["images"])
    assert page["rows"] == 2 and "thread" in page["text"] and "asyncio" in page["text"]
    assert "median of the repeats" in page["text"] and "interpreter" in page["text"]
    shot = screenshot(browser, report.with_name("report-screenshot.png"))
    assert shot.startswith(b"\x89PNG") and len(shot) > 50_000  # a blank page compresses to a few KiB


def test_the_check_sees_a_broken_page(browser, tmp_path):
    """The test above must be able to fail: a script error, a CDN link and a broken image are all caught."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<html><body><img id="x" src="data:image/png;base64,AAAA">'
        '<script src="https://cdn.example.invalid/chart.js"></script>'
        '<script>console.error("boom")</script></body></html>'
    )
    problems, state = open_page(browser, page)
    assert any("boom" in p for p in problems) and any("load failed" in p for p in problems)
    assert state["images"] == [{"id": "x", "ok": False, "width": 0, "src": "data:image/png;base64,AAAA"}]
