"""``echo-bench --python``: the same runs under other interpreters, labelled with version and GIL state.

``--python /opt/py/bin/python3.13t`` and ``--python '/opt/py/bin/python3.13t -X gil=1'``
run one binary twice, the GIL off and on: the cleanest A/B free-threading has.
Each interpreter is asked once what it is (before echoserver is imported), and
the run's label says it: ``thread@3.13t``, ``thread@3.13t+gil``, ``thread@3.11``.

A run that was meant to be GIL-free but whose server reports ``gil=on`` in its
ready line (an extension without free-threading support switched it back on at
import) is flagged as failed, so it is never averaged in with the real ones.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass

_PROBE = (
    "import json, platform, sys, sysconfig; "
    "print(json.dumps({'version': platform.python_version(), "
    "'free_threaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED')), "
    "'gil': getattr(sys, '_is_gil_enabled', lambda: True)()}))"
)


class PythonError(ValueError):
    """An interpreter that cannot be run; the message says which and why."""


@dataclass(frozen=True)
class Python:
    """An interpreter and its options (``-X gil=1``), and what it said it is."""

    command: tuple[str, ...]
    version: str
    free_threaded: bool
    gil: bool  # as started with these options, before any import could change it

    @property
    def label(self) -> str:
        major_minor = ".".join(self.version.split(".")[:2])
        if not self.free_threaded:
            return major_minor
        return f"{major_minor}t+gil" if self.gil else f"{major_minor}t"

    @property
    def meant_gil_free(self) -> bool:
        return self.free_threaded and not self.gil

    def describe(self, server_gil: str | None) -> dict:
        """What the result records: the interpreter, and the GIL state the server itself reported."""
        gil = self.gil if server_gil is None else server_gil == "on"
        return {
            "command": list(self.command),
            "version": self.version,
            "free_threaded": self.free_threaded,
            "gil": gil,
            "label": self.label,
        }

    def gil_flag(self, server_gil: str | None) -> str:
        """Why the run must not count, or "" when the server ran as meant."""
        if self.meant_gil_free and server_gil != "off":
            return f"GIL on: meant to run without it, but the server's ready line said gil={server_gil}"
        return ""


def probe(text: str) -> Python:
    """``"PATH [OPTIONS]"`` -> a :class:`Python`, by running it once."""
    command = tuple(shlex.split(text))
    if not command:
        raise PythonError("--python: empty; give an interpreter path, e.g. --python /usr/bin/python3.13t")
    try:
        proc = subprocess.run([*command, "-c", _PROBE], capture_output=True, text=True, timeout=60)
        facts = json.loads(proc.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise PythonError(f"--python {text!r}: cannot run it ({exc})") from None
    check = subprocess.run([*command, "-c", "import echoserver, echoclients"], capture_output=True, timeout=60)
    if check.returncode:
        raise PythonError(
            f"--python {text!r}: echoserver is not installed there (make a venv of it and pip install -e . into it)"
        )
    return Python(command, facts["version"], facts["free_threaded"], facts["gil"])


def current() -> Python:
    """The interpreter echo-bench itself runs on: the servers' unless --python says otherwise."""
    import sys

    from echoserver.observability.gil import describe

    facts = describe()
    return Python((sys.executable,), facts["version"], facts["free_threaded"], facts["gil"])
