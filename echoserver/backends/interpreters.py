"""``interpreters``: N subinterpreters in one process, each with its own GIL, accepting on one listener.

PEP 684 (3.12) gave each subinterpreter its own GIL, and PEP 734 lets Python
code make them (3.14's ``concurrent.interpreters``; on 3.13 the interpreter's
own ``_interpreters`` module, which the PyPI backport wraps). Interpreters share
no objects, only the process: descriptors and memory. So each one is handed,
by number, a duplicate of every listening socket, one end of a control socket
and a row of a shared-memory counter table; it imports echoserver afresh and
runs the ``thread`` backend on them: its own accept loop, its own connection
threads, the one connection loop every blocking backend runs. The kernel gives
each new connection to whichever interpreter's ``accept()`` wins, as it does
between ``--workers`` processes, but with no fork and no second copy of the
process's memory.

The main interpreter only coordinates: one OS thread per subinterpreter runs
it, the ready line comes once every one of them accepts, a stop (``s``) or a
forced stop (``f``) goes to each over its control socket, and the counters are
the sum of the table's rows. ``--max-connections`` holds for the whole server,
not per interpreter: it is a pipe holding that many one-byte tokens, and an
interpreter watches the listener only while it holds a spare token.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable

from echoserver.backends.base import Backend
from echoserver.backends.stream import BlockingConnection, shutdown_socket
from echoserver.backends.thread import ThreadPerConnectionBackend
from echoserver.config import ConfigError, ServerConfig
from echoserver.observability.stats import SlotTable, Stats, add

log = logging.getLogger("echoserver")

PUBLISH_INTERVAL = 0.5  # seconds between an interpreter's reports of its counters
STOP, FORCE, READY = b"s", b"f", b"r"


class SubinterpreterError(RuntimeError):
    """A subinterpreter failed to start or ended with an exception; the message is its traceback."""


class SubinterpreterBackend(Backend):
    name = "interpreters"

    def __init__(self, config: ServerConfig, stats: Stats | None = None) -> None:
        super().__init__(config, stats)
        from echoserver.processes.cpus import available_cpus

        self.count = config.interpreters or available_cpus()
        self.table = SlotTable.in_memory_file(self.count)
        self._controls: list[socket.socket] = []
        self._errors: list[str] = []
        self._ended: list[int] = []  # rows whose interpreter is gone (list.append is atomic)
        self.tokens = _token_pipe(config.max_connections) if config.max_connections else None
        # What the main thread sleeps on: an interpreter ending, or a signal. A signal may be
        # delivered to any thread, and only a wake-up fd makes it end the main thread's wait.
        self._woken_r, self._woken_w = socket.socketpair()
        self._woken_w.setblocking(False)

    def snapshot(self) -> dict:
        return add(self.stats.snapshot(), self.table.total())

    def wake(self) -> None:
        message = FORCE if self.forcing else STOP
        for control in self._controls:
            try:
                control.send(message)
            except OSError:
                pass  # that interpreter has already finished

    def run(self, listeners: list[socket.socket], ready: Callable[[], None], *, handle_signals: bool = False) -> None:
        pairs = [socket.socketpair() for _ in range(self.count)]
        # Duplicates each interpreter owns, made before the originals close below: closing
        # its own is how an interpreter stops accepting.
        threads = [
            threading.Thread(
                target=self._run_one,
                args=(row, theirs, [os.dup(s.fileno()) for s in listeners]),
                name=f"echo-interpreter-{row}",
            )
            for row, (_, theirs) in enumerate(pairs)
        ]
        self._controls = [ours for ours, _ in pairs]
        if handle_signals:
            self.install_signal_handlers()
            signal.set_wakeup_fd(self._woken_w.fileno(), warn_on_full_buffer=False)
        try:
            for thread in threads:
                thread.start()
            for listener in listeners:
                listener.close()  # every interpreter holds its own duplicate; closing those stops accepting
            if self._wait_until_accepting(threads):
                ready()
            while len(self._ended) < len(threads):
                select.select([self._woken_r], [], [])  # signal handlers run as this returns
                self._woken_r.recv(4096)
        finally:
            self.stop(force=True)  # nothing left to stop if all ended; otherwise bring the rest down
            for thread in threads:
                thread.join()
            if handle_signals:
                signal.set_wakeup_fd(-1)
            for sock in (*self._controls, self._woken_r, self._woken_w):
                sock.close()
            for fd in (self.table.fd, *(self.tokens or ())):
                os.close(fd)
        if self._errors:
            raise SubinterpreterError("\n".join(self._errors))

    def _wait_until_accepting(self, threads: list[threading.Thread]) -> bool:
        """True once every interpreter said READY; False if one ended first (it recorded why)."""
        waiting = dict(zip(self._controls, threads))
        while waiting:
            readable, _, _ = select.select(list(waiting), [], [], 0.1)
            for control in readable:
                if control.recv(1) != READY:  # it closed its end: it failed, and said why
                    self.stop()
                    return False
                del waiting[control]
            if any(not thread.is_alive() for thread in waiting.values()) or self.stopping:
                self.stop()
                return False
        return True

    def _run_one(self, row: int, theirs: socket.socket, listeners: list[int]) -> None:
        """Create one subinterpreter and run the server in it, in this (new) thread, until it drains."""
        options = {
            "config": dataclasses.asdict(self.config),
            "row": row,
            "rows": self.count,
            "table": self.table.fd,
            "listeners": listeners,
            "control": theirs.detach(),
            "logging": _logging_setup(),
            "tokens": self.tokens,
        }
        code = f"from echoserver.backends.interpreters import serve\nserve({options!r})\n"
        try:
            failure = run_in_new_interpreter(code)
        except Exception as exc:  # noqa: BLE001 - could not even create it
            failure = f"{type(exc).__name__}: {exc}"
        if failure:
            self._errors.append(f"subinterpreter {row}: {failure}")
            log.error("subinterpreter %d failed:\n%s", row, failure)
            self.stop()
        self._ended.append(row)
        try:
            self._woken_w.send(b"\0")  # the main thread counts who is left
        except OSError:
            pass  # it is awake already


def run_in_new_interpreter(code: str) -> str | None:
    """Run ``code`` in a fresh isolated subinterpreter (its own GIL) in this thread; its traceback if it raised."""
    try:
        from concurrent import interpreters  # type: ignore[attr-defined,unused-ignore]  # 3.14+
    except ImportError:
        import _interpreters  # 3.13: the module PEP 734's backport wraps

        interp = _interpreters.create("isolated")
        try:
            failure = _interpreters.exec(interp, code)
            return None if failure is None else failure.errdisplay
        finally:
            _interpreters.destroy(interp)
    interp = interpreters.create()
    try:
        interp.exec(code)
    except interpreters.ExecutionFailed as exc:
        return str(exc)
    finally:
        interp.close()
    return None


def _token_pipe(limit: int) -> tuple[int, int]:
    """A pipe holding ``limit`` tokens: the connection slots every interpreter takes from and returns to."""
    import fcntl

    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    for size in (limit, 1 << 20):  # the default /proc/sys/fs/pipe-max-size is 1 MiB
        try:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, size)
            break
        except OSError:
            continue  # the write below says whether the limit fits anyway
    try:
        written = os.write(write_end, b"t" * limit)
    except BlockingIOError:
        written = 0
    if written != limit:
        os.close(read_end)
        os.close(write_end)
        raise ConfigError(
            "max_connections",
            f"the interpreters backend keeps at most {written} connection slots (a pipe's capacity here), got {limit}",
        )
    return read_end, write_end


def _logging_setup() -> tuple[str, str] | None:
    """(level, format) of the CLI's logging, for each interpreter to set up alike; None when embedded."""
    from echoserver.observability.logs import JsonFormatter

    root = logging.getLogger()
    if not root.handlers:
        return None
    fmt = "json" if isinstance(root.handlers[0].formatter, JsonFormatter) else "text"
    return logging.getLevelName(root.level).lower(), fmt


# -- what runs inside each subinterpreter -------------------------------------------


class InterpreterThreads(ThreadPerConnectionBackend):
    """The ``thread`` backend as one subinterpreter runs it, reporting into its row of the table."""

    name = "interpreters"
    poll_interval = PUBLISH_INTERVAL  # wake up to publish even when no client comes

    def __init__(self, config: ServerConfig, table: SlotTable, row: int, tokens: tuple[int, int] | None) -> None:
        super().__init__(config)
        self.table, self.row, self.tokens = table, row, tokens
        self._published = 0.0
        self._spare = 0  # a token taken from the pipe, not yet given to a connection

    def has_capacity(self) -> bool:
        if self.tokens is None or self._spare:
            return True
        try:
            self._spare = len(os.read(self.tokens[0], 1))
        except BlockingIOError:
            return False  # every slot is in use somewhere; wait_readable watches for one coming back
        return bool(self._spare)

    def wait_readable(self, socks: list, timeout: float | None) -> list:
        if self.tokens is None or self._spare:
            return super().wait_readable(socks, timeout)
        readable = super().wait_readable([*socks, self.tokens[0]], timeout)
        return [sock for sock in readable if sock != self.tokens[0]]

    def dispatch(self, connection: BlockingConnection) -> None:
        self._spare = 0
        # Not a daemon thread: an isolated subinterpreter may not start one. The drain
        # ends every connection, forced ones included, before the interpreter is destroyed.
        threading.Thread(
            target=self._serve_holding_token, args=(connection,), name=f"echo-conn-{next(self._ids)}"
        ).start()

    def _serve_holding_token(self, connection: BlockingConnection) -> None:
        try:
            self.serve(connection)
        finally:
            if self.tokens is not None:
                os.write(self.tokens[1], b"t")

    def on_wake(self) -> None:
        now = time.monotonic()
        if now - self._published >= PUBLISH_INTERVAL:
            self._published = now
            self.publish()

    def publish(self) -> None:
        self.table.write(self.row, self.stats.snapshot())


def serve(options: dict) -> None:
    """The subinterpreter's side: serve until told to stop over the control socket, then drain."""
    if options["logging"]:
        from echoserver.observability.logs import setup_logging

        setup_logging(*options["logging"])
    control = socket.socket(fileno=options["control"])
    try:
        listeners = [socket.socket(fileno=fd) for fd in options["listeners"]]
        backend = InterpreterThreads(
            ServerConfig(**options["config"]),
            SlotTable(options["rows"], options["table"]),
            options["row"],
            options["tokens"],
        )
        obeying = threading.Thread(target=_obey, args=(control, backend), name="echo-interpreter-control")
        obeying.start()
        try:
            backend.run(listeners, lambda: control.sendall(READY))
        finally:
            backend.publish()
            if backend._spare:
                os.write(options["tokens"][1], b"t")  # give back the slot it never used
            shutdown_socket(control, socket.SHUT_RD)  # ends _obey's recv
            obeying.join()
    finally:
        control.close()


def _obey(control: socket.socket, backend: InterpreterThreads) -> None:
    while message := control.recv(1):
        backend.stop(force=message == FORCE)
