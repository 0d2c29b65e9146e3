"""``uvloop``: the same protocol as ``asyncio``, on uvloop's libuv-based loop.

Nothing in the protocol changes; only the loop underneath does, which is what
makes the side-by-side numbers a fair comparison of the loops themselves.
"""

from __future__ import annotations

import asyncio

import uvloop

from echoserver.backends.eventloop import EventLoopBackend


class UvloopBackend(EventLoopBackend):
    name = "uvloop"

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return uvloop.new_event_loop()
