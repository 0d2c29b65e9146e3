"""Forking, watching and ending child processes: written once for ``--workers`` and for ``fork``.

Both the supervisor (one process per worker) and the fork backend (a fork
server, and a process per connection) need the same few things: a child that
never returns into its parent's code, that does not outlive the parent, that
holds no descriptor it should not; a parent that reaps exactly its own children
(never ``waitpid(-1)``: the server may be embedded in a process with children of
its own), kills what outstays the grace period, and restarts a crashing child
without burning the CPU. What is special about one backend's processes (an event
loop to re-initialise) is the backend class's business, not this module's.
"""

from __future__ import annotations

import _signal
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable

log = logging.getLogger("echoserver")

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
SIG_BLOCK, SIG_UNBLOCK = int(signal.SIG_BLOCK), int(signal.SIG_UNBLOCK)

try:  # looked up once, in the parent: a ctypes.CDLL per forked child costs ~170 KiB of its memory
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM to this process when its parent exits.

    Call it first thing in a forked child. SIGTERM rather than SIGKILL, so that
    the child drains what it is serving before it goes.
    """
    if _prctl is None:
        return  # not Linux: the child outlives a SIGKILLed parent until it finishes by itself
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def set_process_name(name: bytes) -> None:
    """What ``ps -o comm`` and ``psutil.Process.name()`` show (15 bytes at most)."""
    if _prctl is not None:
        _prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def become_subreaper(on: bool = True) -> bool:
    """Adopt orphaned descendants (they are re-parented here, not to init); returns the previous setting.

    The fork backend needs it so that connection processes whose fork server
    died become its own children, which it can then reap and signal.
    """
    if _prctl is None:
        return False
    previous = ctypes.c_int(0)
    _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(previous), 0, 0, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)
    return bool(previous.value)


def close_descriptors(keep: Iterable[int] = ()) -> None:
    """Close every descriptor but stdio and ``keep``.

    What a child inherits by accident (another client's socket, the parent's
    wake-up pipe) keeps that connection or pipe open after its owner closes it.
    """
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def fork_child(
    body: Callable[[], int],
    *,
    fork: Callable[[], int] = os.fork,
    block: tuple[int, ...] = (),
    what: str = "child process",
    flush: bool = True,
) -> int:
    """Fork; the child runs ``body`` and exits with its status, never returning here. The parent gets the PID.

    Signals in ``block`` are blocked across the fork, so that one meant for the
    new child waits until the child has installed its handlers (``body`` must
    unblock them). Output buffered before the fork is flushed first (``flush``),
    or it would be written twice. The C-level ``_signal`` calls, not
    ``signal``'s wrappers, whose enum conversions touch pages a forked child
    then has to copy.
    """
    if flush:
        sys.stdout.flush()
        sys.stderr.flush()
    if block:
        _signal.pthread_sigmask(SIG_BLOCK, block)
    try:
        pid = fork()
        if pid == 0:
            status = 1
            try:
                status = body()
            except BaseException:  # noqa: BLE001 - a child must never return into its parent's loop
                log.exception("%s %d failed", what, os.getpid())
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
    finally:
        if block:
            _signal.pthread_sigmask(SIG_UNBLOCK, block)
    return pid


def reap(pids: Iterable[int], waitpid: Callable = os.waitpid) -> list[tuple[int, int]]:
    """``(pid, wait status)`` of each of ``pids`` that has exited; the others are left running.

    A PID that is not (or no longer) our child counts as gone, with status 255.
    """
    done = []
    for pid in list(pids):
        try:
            found, status = waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            found, status = pid, 255 << 8
        if found:
            done.append((pid, status))
    return done


def signal_all(pids: Iterable[int], signum: int) -> None:
    for pid in list(pids):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def describe_exit(status: int) -> str:
    """``exited with status 3`` or ``was killed by SIGKILL``, from a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"was killed by {name}"
    return f"exited with status {os.WEXITSTATUS(status)}"


class RestartBackoff:
    """How long to wait before restarting a process that died, so that a crash loop does not burn the CPU.

    A process that lived ``stable_after`` seconds or more is replaced at once;
    one that keeps dying sooner waits ``first``, twice that, ... up to ``most``.
    """

    def __init__(self, first: float = 0.1, most: float = 10.0, stable_after: float = 5.0) -> None:
        self.first, self.most, self.stable_after = first, most, stable_after
        self.quick_deaths = 0  # in a row

    def after_death(self, lived: float) -> float:
        self.quick_deaths = 0 if lived >= self.stable_after else self.quick_deaths + 1
        return min(self.first * 2 ** (self.quick_deaths - 1), self.most) if self.quick_deaths else 0.0
