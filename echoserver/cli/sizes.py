"""Byte counts as people write them (``65536``, ``64k``, ``64KiB``, ``1MiB``), for the server and the clients.

One parser, so that ``echoserver --buffer-size 64k`` and ``echo-load --size 64k``
can never disagree about what ``k`` means: ``k``/``M``/``G`` and ``KiB``/``MiB``/
``GiB`` are binary, ``kB``/``MB``/``GB`` decimal.
"""

from __future__ import annotations

import re

import click

UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 1000,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 1000**2,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 1000**3,
}
EXAMPLES = "65536, 64k, 64KiB, 1MiB"


def parse_size(text: str) -> int:
    """The byte count ``text`` stands for; ``ValueError`` naming the examples when it is not one."""
    match = re.fullmatch(r"\s*(-?\d+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and match.group(2).lower()
    if not match or unit not in UNITS:
        raise ValueError(f"{text!r} is not a size (examples: {EXAMPLES})")
    return int(match.group(1)) * UNITS[unit]


class Size(click.ParamType):
    """A click option type for :func:`parse_size`."""

    name = "size"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
