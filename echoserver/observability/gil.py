"""Which interpreter runs this process, and whether the GIL is on: said everywhere a figure is reported.

On a free-threaded build (PEP 703, ``python3.13t``) the GIL is off by default,
but any C extension that does not declare free-threading support turns it back
on, silently, when it is imported; ``-X gil=1`` or ``PYTHON_GIL=1`` turn it on
by choice. A measurement that meant to be GIL-free and was not is worse than no
measurement, so the state is read where it is true (``sys._is_gil_enabled()``,
at the moment of reporting, after every import) rather than inferred from the
binary's name.
"""

from __future__ import annotations

import platform
import sys
import sysconfig


def free_threaded_build() -> bool:
    """Built with ``--disable-gil``: the only kind of interpreter that can run without a GIL."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """Whether the GIL is on right now (always, on a default build)."""
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def gil_state() -> str | None:
    """``"off"`` or ``"on"`` on a free-threaded build; ``None`` where there is no choice to report."""
    if not free_threaded_build():
        return None
    return "on" if gil_enabled() else "off"


def python_label() -> str:
    """``3.13t`` (free-threaded, GIL off), ``3.13t+gil`` (the same binary with the GIL on), ``3.11``."""
    version = "{}.{}".format(*sys.version_info[:2])
    if not free_threaded_build():
        return version
    return f"{version}t+gil" if gil_enabled() else f"{version}t"


def describe() -> dict:
    """What a result file records about the interpreter that produced it."""
    return {
        "implementation": platform.python_implementation(),
        "version": platform.python_version(),
        "free_threaded": free_threaded_build(),
        "gil": gil_enabled(),
        "label": python_label(),
    }
