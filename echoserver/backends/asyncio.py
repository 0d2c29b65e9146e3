"""``asyncio``: the shared :class:`~echoserver.backends.eventloop.EchoProtocol` on the standard library loop.

One thread, one event loop, every connection a protocol object driven by
callbacks: thousands of idle connections cost a few KiB each, and ``--io-delay``
is an ``await asyncio.sleep`` that lets the loop serve everyone else meanwhile.
CPU work (``--cpu-work``) blocks the whole loop, which is the lesson it teaches.
"""

from __future__ import annotations

import asyncio

from echoserver.backends.eventloop import EventLoopBackend


class AsyncioBackend(EventLoopBackend):
    name = "asyncio"

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()
