"""Small helpers for processes that must not outlive the process that forked them."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM to this process when its parent exits.

    Call it first thing in a forked child. SIGTERM rather than SIGKILL, so that
    the child drains what it is serving before it goes.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the child outlives a SIGKILLed parent until it finishes by itself
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
