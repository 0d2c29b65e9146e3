"""The one connection loop of the blocking backends.

``thread``, ``threadpool``, ``fork`` and ``gevent`` differ only in *who* calls
:meth:`BlockingConnection.run` (a new thread, a pool worker, a child process, a
greenlet); the loop itself is this file. It relies on blocking-socket
semantics, which gevent provides cooperatively.

Backpressure comes for free here: ``sendall`` blocks while the peer is not
reading, so the loop stops calling ``recv`` and the kernel's buffers, not ours,
hold the rest.
"""

from __future__ import annotations

import logging
import socket
import time

from echoserver.backends.closing import (
    REFUSALS_TO_LINGER,
    Refused,
    ResetInjected,
    failure_kind,
    linger,
    record_close,
    reset_connection,
    shutdown_socket,
)
from echoserver.backends.state import ServerState
from echoserver.sansio.faults import Pacing
from echoserver.sansio.handlers import PLAIN_ECHO, make_handler
from echoserver.sansio.proxy_protocol import ProxyHeaderReader, ProxyProtocolError

log = logging.getLogger("echoserver.connection")

PEEK_SIZE = 4096  # a PROXY header is read in peeks of at most this many bytes


class BlockingConnection:
    """One client on a blocking socket, served until it or the server is done.

    Its phases, each with a total deadline: the PROXY header (``--header-timeout``,
    read in clear, before TLS, as HAProxy sends it), the TLS handshake
    (``--tls-handshake-timeout``), then the echo itself (``--idle-timeout`` per
    read and per reply), and the linger after the server ends it (2 s).
    """

    __slots__ = ("sock", "state", "peer", "_drained")

    def __init__(self, sock: socket.socket, state: ServerState, peer: object = None) -> None:
        self.sock = sock
        self.state = state
        self.peer = peer
        self._drained = False

    def run(self) -> None:
        """Serve the connection to its end; never raises (the one error path counts and logs)."""
        state, config = self.state, self.state.config
        stats = state.stats
        counters = stats.opened()
        handler = make_handler(config)
        idle = False
        error = proxy = None
        try:
            first = b""
            if config.proxy_protocol != "off":
                proxy = self._read_proxy_header()
                first = proxy.leftover
            if state.tls is not None:
                self._handshake()
            sock = self.sock
            sock.settimeout(config.idle_timeout or None)
            if state.banner:
                sock.sendall(state.banner)
                counters.bytes_out += len(state.banner)
            ended_by_peer = self._echo(sock, handler, counters, Pacing(config) if config.paced else None, first)
            sock.shutdown(socket.SHUT_WR)
            if not ended_by_peer:
                linger(sock)
        except TimeoutError:
            idle = True
            log.debug("closing %s: idle for %ss", self.peer, config.idle_timeout)
        except ResetInjected:
            pass  # --reset-probability: counted as a fault when it was chosen
        except Exception as exc:  # noqa: BLE001 - the one error path: whatever it is, log it once, count it once
            error = failure_kind(state.backend, self.peer, exc)
            if error in REFUSALS_TO_LINGER:
                shutdown_socket(self.sock, socket.SHUT_WR)
                linger(self.sock)
        finally:
            self.sock.close()
            record_close(stats, counters, self.peer, idle=idle, error=error, proxy=proxy)

    def _read_proxy_header(self) -> ProxyHeaderReader:
        """The PROXY header, within ``--header-timeout`` in all, leaving whatever follows it unread.

        It peeks and then takes only the header's bytes, so that a TLS
        ClientHello sent right behind the header is still there for the handshake.
        """
        config, sock = self.state.config, self.sock
        trusted = self.peer in self.state.trusted
        if not trusted and config.proxy_protocol == "required":
            raise Refused("proxy_untrusted", f"PROXY header required, but {self.peer} is not in --proxy-trusted")
        reader = ProxyHeaderReader(config.proxy_protocol)
        deadline = time.monotonic() + config.header_timeout
        try:
            while not reader.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                peeked = sock.recv(PEEK_SIZE, socket.MSG_PEEK)
                if not peeked:
                    raise Refused("proxy_header", "closed before the PROXY header was complete")
                take = reader.take(peeked)
                while take:
                    take -= len(sock.recv(take))  # already in the kernel: returns at once
        except TimeoutError:
            raise Refused("header_timeout", f"no PROXY header within {config.header_timeout}s") from None
        except ProxyProtocolError as exc:
            raise Refused("proxy_header", f"bad PROXY header: {exc}") from None
        if reader.version is not None and not trusted:
            raise Refused("proxy_untrusted", f"PROXY header from {self.peer}, which is not in --proxy-trusted")
        return reader

    def _handshake(self) -> None:
        """The TLS handshake within ``--tls-handshake-timeout`` in all, however the peer trickles it.

        A socket timeout would bound each read, not the handshake (gevent's
        ``do_handshake`` restarts it at every read), so the handshake runs
        non-blocking, waiting on the backend's own readiness wait until the deadline.
        """
        from ssl import SSLWantReadError, SSLWantWriteError  # gevent.ssl raises these same classes

        state = self.state
        timeout = state.config.tls_handshake_timeout
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0)
        self.sock = sock = state.tls.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
        while True:
            try:
                sock.do_handshake()
                return
            except SSLWantReadError:
                writable = False
            except SSLWantWriteError:
                writable = True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not state.wait_socket(sock, writable, remaining):
                raise Refused("tls_timeout", f"TLS handshake not done within {timeout}s")

    def _echo_counting_on_exit(self, sock: socket.socket, counters, size: int) -> bool:
        """A fork child's plain echo: the bare reference loop, its counts kept in locals until it ends.

        A connection process publishes its counters only when the main process asks
        (SIGUSR1) and as it exits, so nothing reads ``counters`` between messages;
        updating three of its attributes per message (each a new int object past 256)
        doubled the bytecode this loop runs and cost the fork backend 3-5% of a core
        against the bare loop (perf, 200 x 1 KiB). The SIGUSR1 handler reads the
        locals off this frame (:func:`counts_held_by`); the ``finally`` folds them in
        without a call or a backward jump, so no handler runs half-way through it.
        """
        recv, sendall = sock.recv, sock.sendall
        received = count = unsent = 0
        try:
            while True:
                data = recv(size)
                if not data:
                    return True
                received += len(data)
                try:
                    sendall(data)
                except BaseException:
                    unsent = len(data)
                    raise
                count += 1
        finally:
            counters.bytes_in += received
            counters.bytes_out += received - unsent
            counters.messages += count
            received = count = unsent = 0

    def _echo(self, sock: socket.socket, handler, counters, pacing: Pacing | None, first: bytes = b"") -> bool:
        """The loop: read, hand to the handler, send what it returns, until EOF (True) or the server closes.

        ``first``: payload that arrived before the loop started (taken while looking for a PROXY header).
        """
        recv, sendall, feed, size = sock.recv, sock.sendall, handler.feed, self.state.config.buffer_size
        if first:
            counters.bytes_in += len(first)
            reply, units = feed(first)
            if reply:
                sendall(reply)
                counters.bytes_out += len(reply)
            counters.messages += units
            if handler.closing:
                return False
        if handler is PLAIN_ECHO and pacing is None:
            if self.state.counts_on_exit:
                return self._echo_counting_on_exit(sock, counters, size)
            # What the handler would do, without calling it: the loop of the bare reference servers
            # plus three counters (docs/overhead.md measures what the call cost). `while True`, not
            # `while data := recv(size)`: CPython 3.11 warms a function up for specialisation only on
            # entry and on an unconditional backward jump, and a fork child enters this once, so a
            # loop that ends in a conditional jump back would run unspecialised for its whole life.
            while True:
                data = recv(size)
                if not data:
                    return True
                n = len(data)
                counters.bytes_in += n
                sendall(data)
                counters.bytes_out += n
                counters.messages += 1
        while True:
            data = recv(size)  # a fresh bytes each time: no buffer held by an idle connection
            if not data:
                tail = handler.eof()
                if tail:
                    sendall(tail)
                    counters.bytes_out += len(tail)
                return True
            counters.bytes_in += len(data)
            reply, units = feed(data)
            if pacing is None:
                if reply:
                    sendall(reply)
                    counters.bytes_out += len(reply)
                counters.messages += units
            elif not self._paced_reply(sock, reply, units, pacing, counters):
                return False
            if handler.closing:
                return False

    def _paced_reply(self, sock: socket.socket, reply: bytes, units: int, pacing: Pacing, counters) -> bool:
        """The slow path: wait, maybe reset, send within the byte budget, maybe trickle. False: close now."""
        stats, sleep = self.state.stats, self.state.sleep
        wait = pacing.wait_before_reply(units)
        if wait:
            sleep(wait)
            if pacing.delay:
                stats.count("fault_delayed")
        if units and pacing.reset_now():
            stats.count("fault_reset")
            reset_connection(sock)
            raise ResetInjected
        reply, spent = pacing.allow(reply)
        for piece, pause in pacing.pieces(reply):
            sendall = sock.sendall
            sendall(piece)
            counters.bytes_out += len(piece)
            if pause:
                sleep(pause)
        if pacing.trickle and reply:
            stats.count("fault_trickled")
        counters.messages += units
        if spent:
            stats.count("fault_truncated")
        return not spent

    def drain(self) -> None:
        """Stop reading new data: what the kernel already holds is echoed, then the loop sees EOF.

        ``shutdown(SHUT_RD)`` wakes a ``recv`` blocked in another thread or
        greenlet, which ``close`` would not do safely.
        """
        if not self._drained:
            self._drained = True
            shutdown_socket(self.sock, socket.SHUT_RD)

    def abort(self) -> None:
        """Cut the connection now: a blocked ``recv`` or ``sendall`` fails at once."""
        shutdown_socket(self.sock, socket.SHUT_RDWR)


def counts_held_by(frame) -> tuple[int, int, int]:
    """``(bytes_in, bytes_out, messages)`` that a :meth:`BlockingConnection._echo_counting_on_exit`
    on ``frame``'s stack holds in its locals, not yet in its counters; zeros when none runs there.

    Called from a signal handler, whose ``frame`` is the Python frame the signal interrupted.
    """
    code = BlockingConnection._echo_counting_on_exit.__code__
    while frame is not None:
        if frame.f_code is code:
            held = frame.f_locals
            return held["received"], held["received"] - held["unsent"], held["count"]
        frame = frame.f_back
    return 0, 0, 0
