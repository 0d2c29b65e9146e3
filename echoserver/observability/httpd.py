"""A small HTTP/1.x endpoint that no peer can stall: bounded connections, a total deadline each.

The metrics port is the one listener of a server that anyone can reach and that
is not an echo. The standard library's ``ThreadingWSGIServer`` costs a thread and
a descriptor per connection with no timeout, and a polled ``WSGIServer`` reads a
request with a blocking ``recv``: one idle peer froze the ``--workers``
supervisor that polled it. This endpoint instead

- keeps at most ``max_connections`` open; when full, a new connection evicts the
  oldest one that has not finished its request (a scraper is never locked out
  by idle peers);
- gives each connection one total deadline for reading its request and writing
  the answer, however the bytes are trickled;
- never blocks: every socket is non-blocking, and :meth:`HttpEndpoint.step`
  handles only what is ready.

It runs either in a thread of its own (:meth:`start`), or inside its owner's
loop: the owner waits for :meth:`fileno` to be readable (an epoll descriptor
that is readable whenever a socket of ours is ready) and calls :meth:`step`.
The ``--workers`` supervisor does the latter, since it must run no thread, and
passes the original ``select.epoll`` to poll with.
Sockets are ``_socket.socket`` objects, which gevent's monkey-patching does not
replace, so the polled mode never touches a gevent hub.
"""

from __future__ import annotations

import _socket
import errno
import logging
import selectors
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

log = logging.getLogger("echoserver.metrics")

MAX_REQUEST = 8192  # bytes of request line and headers; more is a 431
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Response(NamedTuple):
    status: str  # "200 OK"
    content_type: str
    body: bytes


#: ``route(method, path) -> Response``; ``path`` without its query string.
Router = Callable[[str, str], Response]


class _Peer:
    __slots__ = ("sock", "deadline", "inbox", "outbox")

    def __init__(self, sock, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.inbox = b""
        self.outbox: memoryview | None = None  # set once the request is complete


class _EpollPoller:
    """An epoll object, for an owner that polls :meth:`fileno` (the owner passes the class: under
    gevent the original ``select.epoll``, which monkey-patching removes from ``select``)."""

    _in, _out = 0x001, 0x004  # EPOLLIN, EPOLLOUT: the kernel's values, whichever module is patched

    def __init__(self, epoll: Callable[[], Any]) -> None:
        self._epoll = epoll()

    def fileno(self) -> int:
        return self._epoll.fileno()

    def register(self, fd: int, events: int) -> None:
        self._epoll.register(fd, self._mask(events))

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, self._mask(events))

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        ready = []
        for fd, mask in self._epoll.poll(timeout):
            ready.append((fd, (READ if mask & ~self._out else 0) | (WRITE if mask & self._out else 0)))
        return ready

    def close(self) -> None:
        self._epoll.close()

    def _mask(self, events: int) -> int:
        return (self._in if events & READ else 0) | (self._out if events & WRITE else 0)


class _SelectorPoller:
    """``selectors.DefaultSelector``: cooperative under gevent, for the endpoint's own thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def fileno(self) -> int:
        return self._selector.fileno() if hasattr(self._selector, "fileno") else -1

    def register(self, fd: int, events: int) -> None:
        self._selector.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._selector.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return [(key.fd, events) for key, events in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()


class HttpEndpoint:
    """Answers ``GET``/``HEAD`` through ``route``; see the module's docstring for the guarantees."""

    def __init__(
        self,
        host: str,
        port: int,
        route: Router,
        *,
        epoll: Callable[[], Any] | None = None,
        max_connections: int = 32,
        timeout: float = 5.0,
    ) -> None:
        """Polled by its owner when given ``epoll`` (the class to poll with), else served by its own thread."""
        self.route = route
        self.max_connections = max_connections
        self.timeout = timeout
        family = _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)[0][0]
        self._listener = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(64)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._poller: _EpollPoller | _SelectorPoller = _EpollPoller(epoll) if epoll else _SelectorPoller()
        self._poller.register(self._listener.fileno(), READ)
        self._peers: dict[int, _Peer] = {}  # insertion order: oldest first
        self._accept_paused_until = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="echo-metrics", daemon=True) if not epoll else None

    # -- driving it -----------------------------------------------------------

    def start(self) -> HttpEndpoint:
        if self._thread is not None:
            self._thread.start()
        return self

    def fileno(self) -> int:
        """Readable whenever :meth:`step` has something to do (polled mode)."""
        return self._poller.fileno()

    def step(self, timeout: float = 0.0) -> None:
        """Handle what is ready now (waiting up to ``timeout``), then expire overdue peers."""
        now = time.monotonic()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._poller.register(self._listener.fileno(), READ)
        for fd, events in self._poller.poll(timeout):
            if fd == self._listener.fileno():
                self._accept()
            elif fd in self._peers:
                self._on_ready(self._peers[fd], events)
        self._expire(time.monotonic())

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(5.0)
        for peer in list(self._peers.values()):
            self._close(peer)
        self._poller.close()
        self._listener.close()

    @property
    def open_connections(self) -> int:
        return len(self._peers)

    def descriptors(self) -> list[int]:
        """Every descriptor of ours, for a forked child to close (it must not hold our port open)."""
        return [self._poller.fileno(), self._listener.fileno(), *self._peers]

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self.step(0.25)

    # -- connections ----------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(16):  # a bounded batch: never starve the owner's loop
            try:
                fd, _address = self._listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRNOS:  # out of descriptors: stop watching for a moment
                    log.warning("metrics endpoint: accept() failed: %s", exc.strerror)
                    self._poller.unregister(self._listener.fileno())
                    self._accept_paused_until = time.monotonic() + 0.1
                return  # ECONNABORTED and the like: the peer left first
            sock = _socket.socket(self._listener.family, _socket.SOCK_STREAM, 0, fileno=fd)
            sock.setblocking(False)
            if len(self._peers) >= self.max_connections:
                self._evict_one()
            peer = _Peer(sock, time.monotonic() + self.timeout)
            self._peers[sock.fileno()] = peer
            self._poller.register(sock.fileno(), READ)

    def _evict_one(self) -> None:
        """Make room: drop the oldest peer still sending its request (else the oldest of all)."""
        victims = [p for p in self._peers.values() if p.outbox is None] or list(self._peers.values())
        log.debug("metrics endpoint full (%d connections): dropping the oldest", len(self._peers))
        self._close(victims[0])

    def _on_ready(self, peer: _Peer, events: int) -> None:
        try:
            if peer.outbox is None:
                self._read(peer)
            elif events & WRITE:
                self._write(peer)
        except OSError as exc:
            log.debug("metrics endpoint: %s", exc)
            self._close(peer)

    def _read(self, peer: _Peer) -> None:
        try:
            chunk = peer.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            self._close(peer)
            return
        peer.inbox += chunk
        head, found, _ = peer.inbox.partition(b"\r\n\r\n")
        if not found:
            head, found, _ = peer.inbox.partition(b"\n\n")
        if found:
            self._answer(peer, self._respond(head))
        elif len(peer.inbox) > MAX_REQUEST:
            self._answer(peer, Response("431 Request Header Fields Too Large", "text/plain", b"request too large\n"))

    def _respond(self, head: bytes) -> Response:
        parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return Response("400 Bad Request", "text/plain", b"bad request\n")
        method, target = parts[0].decode("latin-1"), parts[1].decode("latin-1")
        if method not in ("GET", "HEAD"):
            return Response("405 Method Not Allowed", "text/plain", b"only GET and HEAD\n")
        try:
            response = self.route(method, target.split("?", 1)[0])
        except Exception:  # a bug in a route must not take the endpoint down
            log.exception("metrics endpoint: %s %s failed", method, target)
            response = Response("500 Internal Server Error", "text/plain", b"internal error\n")
        return response._replace(body=b"") if method == "HEAD" else response

    def _answer(self, peer: _Peer, response: Response) -> None:
        head = (
            f"HTTP/1.1 {response.status}\r\nContent-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        peer.outbox = memoryview(head + response.body)
        peer.inbox = b""
        self._poller.modify(peer.sock.fileno(), WRITE)
        self._write(peer)

    def _write(self, peer: _Peer) -> None:
        assert peer.outbox is not None
        try:
            sent = peer.sock.send(peer.outbox)
        except (BlockingIOError, InterruptedError):
            return
        peer.outbox = peer.outbox[sent:]
        if not peer.outbox:
            self._close(peer)

    def _expire(self, now: float) -> None:
        for peer in [p for p in self._peers.values() if p.deadline <= now]:
            log.debug("metrics endpoint: closing a connection past its %gs deadline", self.timeout)
            self._close(peer)

    def _close(self, peer: _Peer) -> None:
        fd = peer.sock.fileno()
        if self._peers.pop(fd, None) is None:
            return
        try:
            self._poller.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
        peer.sock.close()
