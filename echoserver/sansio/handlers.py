"""Sans-IO connection handlers: bytes in, bytes out, no sockets.

Every backend creates one handler per connection and feeds it whatever ``recv``
returned. The handler never blocks and never sleeps: simulated IO latency
(``--io-delay``) is the backend's job, because each concurrency model sleeps its
own way. Simulated CPU work (``--cpu-work``) *is* done here, on purpose: it is
pure-Python arithmetic that holds the GIL, which is exactly what the comparison
between threads and processes needs to show.
"""

from __future__ import annotations

import os

from echoserver.config import HEAVY_MARKER, ServerConfig


def burn_cpu(iterations: int) -> int:
    """Pure-Python arithmetic that holds the GIL for ``iterations`` steps."""
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x


class Handler:
    """Base handler: echo every byte back, in order.

    ``feed`` returns the reply and the number of messages it covers (a chunk for
    the byte-stream handlers, a line for ``line``), which is what ``--cpu-work``,
    ``--io-delay`` and the message counters are per. ``closing`` turns true when
    the handler wants the connection closed once the reply is sent.

    ``marked_only`` (``--cpu-work-on marked``) burns the CPU only for messages
    that begin with :data:`~echoserver.config.HEAVY_MARKER`: the server decides
    per message, the same way under every backend, so that heavy and light
    clients can share one server (the ``mixed`` scenario).
    """

    __slots__ = ("cpu_work", "marked_only", "closing")

    def __init__(self, cpu_work: int = 0, marked_only: bool = False) -> None:
        self.cpu_work = cpu_work
        self.marked_only = marked_only
        self.closing = False

    def feed(self, data: bytes) -> tuple[bytes, int]:
        if self.cpu_work and (not self.marked_only or data[:1] == HEAVY_MARKER):
            burn_cpu(self.cpu_work)
        return self.transform(data), 1

    def transform(self, data: bytes) -> bytes:
        return data

    def eof(self) -> bytes:
        """What is still owed to the peer once it has sent all it will send."""
        return b""


class EchoHandler(Handler):
    __slots__ = ()


class UpperHandler(Handler):
    """ASCII upper-casing, as in the classic threaded-server tutorials."""

    __slots__ = ()

    def transform(self, data: bytes) -> bytes:
        return bytes(data).upper()  # bytes.upper() touches ASCII letters only


class LineHandler(Handler):
    """Echo complete newline-terminated lines; a line longer than ``max_line`` is refused.

    A trailing fragment without a newline is echoed at end of input, so a
    half-closing client still gets back every byte it sent.
    """

    __slots__ = ("max_line", "pending")

    def __init__(self, cpu_work: int = 0, max_line: int = 65536, marked_only: bool = False) -> None:
        super().__init__(cpu_work, marked_only)
        self.max_line = max_line
        self.pending = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, int]:
        if self.closing:
            return b"", 0
        self.pending += data
        end = self.pending.rfind(b"\n") + 1
        complete = bytes(self.pending[:end])
        del self.pending[:end]
        lines = complete.count(b"\n")
        longest_possible = max(len(self.pending), _longest_line(complete) if lines else 0)
        if longest_possible > self.max_line:
            # The lines before the first too long one are whole and valid: they are echoed.
            self.closing = True
            self.pending.clear()
            complete = _lines_within(complete, self.max_line)
            lines = complete.count(b"\n")
            self._burn(complete, lines)
            return complete + f"ERROR line longer than {self.max_line} bytes\n".encode(), lines + 1
        self._burn(complete, lines)
        return complete, lines

    def _burn(self, complete: bytes | bytearray, lines: int) -> None:
        if self.cpu_work:
            heavy = (
                lines if not self.marked_only else sum(line[:1] == HEAVY_MARKER for line in complete.split(b"\n")[:-1])
            )
            for _ in range(heavy):
                burn_cpu(self.cpu_work)

    def eof(self) -> bytes:
        tail = bytes(self.pending)
        self.pending.clear()
        return tail


def _lines_within(block: bytes, limit: int) -> bytes:
    """The leading whole lines of ``block`` up to (not including) the first longer than ``limit``."""
    start = 0
    while (newline := block.find(b"\n", start)) >= 0 and newline + 1 - start <= limit:
        start = newline + 1
    return block[:start]


def _longest_line(block: bytes) -> int:
    return max(len(line) + 1 for line in block.split(b"\n")[:-1])


# A hidden hook for the suite's one-error-path test (tests/test_error_path.py): with
# ECHOSERVER_TEST_RAISE_ON=MARKER, --handler upper raises on a message containing MARKER,
# so that a real exception leaves a real handler on every backend, fork's connection
# processes included (they are forked from a process started with exec, which no
# monkey-patch made in the server process reaches). Read once; off unless set.
_RAISE_ON = os.environ.get("ECHOSERVER_TEST_RAISE_ON", "").encode()


class _FaultyUpperHandler(UpperHandler):
    __slots__ = ()

    def transform(self, data: bytes) -> bytes:
        if _RAISE_ON in data:
            raise RuntimeError(f"injected by ECHOSERVER_TEST_RAISE_ON={_RAISE_ON.decode()}")
        return super().transform(data)


# Plain echo keeps no state (it never closes, never errs): one instance serves
# every connection, which saves an object per idle connection.
PLAIN_ECHO = EchoHandler()


def make_handler(config: ServerConfig) -> Handler:
    """A fresh handler for one connection."""
    handler: Handler
    marked_only = config.cpu_work_on == "marked"
    if config.handler == "line":
        handler = LineHandler(config.cpu_work, config.max_line, marked_only)
    elif config.handler == "upper":
        handler = (_FaultyUpperHandler if _RAISE_ON else UpperHandler)(config.cpu_work, marked_only)
    elif config.cpu_work:
        handler = EchoHandler(config.cpu_work, marked_only)
    else:
        handler = PLAIN_ECHO
    return handler
