"""Small helpers for processes that must not outlive the process that forked them."""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

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


def stdlib(module: str, name: str):
    """The standard library's own function, even in a process gevent has monkey-patched."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)
