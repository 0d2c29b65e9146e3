"""What connection processes send back to the main process: log records and counters.

Both are built to touch few pages in the child: a log record is formatted in
the child and written in one ``write``; counters are written into shared
memory only when the main process asks. Imported by the fork server, so this
module imports nothing heavy.
"""

from __future__ import annotations

import os
import struct


class PipeHandler:
    """A logging handler that writes each record, formatted here, in one ``write`` to the main process's pipe.

    One write of less than ``PIPE_BUF`` bytes is atomic, so records of
    concurrent children never interleave; the main process splits on NUL.
    """

    def __init__(self, fd: int) -> None:
        import logging

        self.fd = fd
        self.handler = logging.Handler()
        self.handler.emit = self.emit

    def emit(self, record) -> None:
        text = record.getMessage()
        if record.exc_info:
            import traceback

            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        line = f"{record.levelno} {record.name} {os.getpid()} {text}".replace("\0", " ")
        try:
            os.write(self.fd, line.encode(errors="replace")[:4000] + b"\0")
        except OSError:
            pass  # the main process is gone: nobody left to tell


class CounterRequests:
    """Counters on demand: the main process asks (a new generation, then SIGUSR1), each child answers.

    A child publishes its counters into its row only when asked and once when it
    ends, so an idle connection's process sleeps in ``recv`` and never wakes to
    report (it used to, twice a second). Shared memory, one writer per slot:
    slot 0 holds the generation asked for, slot ``1 + row`` the last one a row's
    child answered.
    """

    _SLOT = struct.Struct("=q")

    def __init__(self, rows: int, fd: int) -> None:
        import mmap

        size = (rows + 1) * self._SLOT.size
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        self.rows = rows
        self._memory = mmap.mmap(fd, size)

    def ask(self) -> int:
        generation = self._SLOT.unpack_from(self._memory, 0)[0] + 1
        self._SLOT.pack_into(self._memory, 0, generation)
        return generation

    def answer(self, row: int) -> None:
        self._SLOT.pack_into(self._memory, (1 + row) * self._SLOT.size, self._SLOT.unpack_from(self._memory, 0)[0])

    def answered(self, row: int, generation: int) -> bool:
        return self._SLOT.unpack_from(self._memory, (1 + row) * self._SLOT.size)[0] >= generation
