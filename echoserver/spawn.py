"""Run ``echoserver`` as a child process and wait for it the right way: by its ready line.

Used by ``echo-bench`` and by the tests. The child's stderr is read by a
thread, so a chatty server can never block on a full pipe; every line is kept
for whoever wants to assert on the logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from echoserver.observability.ready import parse_gil, parse_ready_line


class ServerProcess:
    """``with ServerProcess("--backend", "gevent") as server: connect(server.address)``.

    ``python`` runs the server under another interpreter (with its own options,
    e.g. ``["/opt/py/bin/python3.13t", "-X", "gil=1"]``); it must have echoserver
    installed. ``gil`` is what its ready line said: ``"on"``/``"off"`` on a
    free-threaded build, ``None`` elsewhere.
    """

    def __init__(
        self, *args: str, env: dict | None = None, ready_timeout: float = 20.0, python: Sequence[str] | None = None
    ) -> None:
        self.args = [*(python or [sys.executable]), "-m", "echoserver", "--port", "0", *args]
        self.env = {**os.environ, **(env or {})}
        self.ready_timeout = ready_timeout
        self.lines: list[str] = []
        self.host = ""
        self.port = 0
        self.backend = ""
        self.gil: str | None = None
        self._ready = threading.Event()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() the server first"
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def start(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_stderr, daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"echoserver did not become ready: {' '.join(self.args)}\n{self.stderr}")
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if not self._ready.is_set():
                found = parse_ready_line(line)
                if found:
                    self.host, self.port, self.backend = found
                    self.gil = parse_gil(line)
                    self._ready.set()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the graceful exit, SIGKILL if it does not come; the exit code."""
        if self.proc is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.kill()
