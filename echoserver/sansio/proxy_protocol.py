"""The PROXY protocol (versions 1 and 2), sans-IO: bytes in, header fields and payload out.

A load balancer that terminates the client's TCP connection (HAProxy with
``send-proxy``/``send-proxy-v2``, an AWS NLB with proxy protocol enabled) opens its
own connection to us and prepends one header naming the real client. The reader
here consumes that header and hands back whatever followed it, so the connection
handler behind it only ever sees the client's payload.

Version 1 is one text line, ``PROXY TCP4 <src> <dst> <sport> <dport>\\r\\n``, at most
107 bytes. Version 2 is a 12-byte binary signature, a version/command byte, a
family/transport byte, a big-endian length, then the address block and optional
TLVs (skipped, not parsed). The two signatures differ at the first byte, which is
what lets ``optional`` mode tell a plain client from a proxied one as early as
possible: at the first byte that cannot belong to either signature.
"""

from __future__ import annotations

import ipaddress
import struct

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # including the CRLF
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH = 16  # signature, version/command, family/transport, length

_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0x0, 0x1, 0x2, 0x3
_TRANSPORT_STREAM = 0x1
# Bytes of the address block each family needs: two addresses, then two ports (UNIX: two paths).
_V2_ADDRESS_LENGTH = {_AF_UNSPEC: 0, _AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}
_V1_FAMILIES = {"TCP4": ipaddress.IPv4Address, "TCP6": ipaddress.IPv6Address}

MODES = ("optional", "required")


class ProxyProtocolError(ValueError):
    """A malformed or missing header; the message says what is wrong (one line)."""


class ProxyHeaderReader:
    """Sans-IO reader for the header a load balancer prepends (HAProxy send-proxy/-v2, AWS NLB).

    Feed it the connection's first bytes until :meth:`feed` returns the payload;
    after that the reader is done and the fields below describe the header.
    """

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"PROXY protocol mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.version: int | None = None
        self.command: str | None = None
        self.source: tuple[str, int] | None = None
        self.destination: tuple[str, int] | None = None
        self.done = False  # the header has been read (or, in optional mode, found absent)
        self.leftover = b""  # see take()
        self._buffer = bytearray()

    def take(self, peeked: bytes) -> int:
        """For an I/O layer that peeks before it reads: how many of ``peeked`` to remove from the stream.

        ``peeked`` is what ``recv(MSG_PEEK)`` saw beyond what earlier calls
        removed. Taking only header bytes leaves the payload in the kernel, so
        a TLS handshake can start right after a header sent in clear. When it
        returns with :attr:`done` set, :attr:`leftover` holds bytes taken earlier
        that turned out to be payload (``optional`` mode, a plain client whose
        first bytes looked like a signature); the caller hands those on first.
        """
        payload = self.feed(peeked)
        if payload is None:
            return len(peeked)
        self.done = True
        if len(payload) > len(peeked):
            self.leftover = payload[: len(payload) - len(peeked)]
            return 0
        return len(peeked) - len(payload)

    def feed(self, data: bytes) -> bytes | None:
        """None while more bytes are needed to decide; then the payload that follows the header.

        The payload is ``b""`` if the header ended exactly at the end of ``data``.
        Once it has returned bytes, the reader is finished: ``feed`` is not called again.
        Raises :class:`ProxyProtocolError` on a malformed header, or in ``required``
        mode when the stream does not start with a v1 or v2 signature.
        """
        self._buffer += data
        buffer = self._buffer
        if _is_prefix_of(buffer, V1_PREFIX):
            return self._feed_v1() if len(buffer) >= len(V1_PREFIX) else None
        if _is_prefix_of(buffer, V2_SIGNATURE):
            return self._feed_v2() if len(buffer) >= len(V2_SIGNATURE) else None
        if self.mode == "required":
            start = bytes(buffer[:16])
            raise ProxyProtocolError(f"no PROXY protocol header: stream starts with {start!r}")
        return self._finish(0)

    def _finish(self, header_length: int) -> bytes:
        payload = bytes(self._buffer[header_length:])
        self._buffer = bytearray()
        return payload

    # -- version 1 ------------------------------------------------------------------

    def _feed_v1(self) -> bytes | None:
        buffer = self._buffer
        # The line ends at the first LF, whatever arrived with it: deciding on the first
        # LF alone keeps the answer the same however the bytes were split.
        newline = buffer.find(b"\n", 0, V1_MAX_LENGTH)
        if newline < 0:
            if len(buffer) >= V1_MAX_LENGTH:
                raise ProxyProtocolError(f"PROXY v1 header has no CRLF within {V1_MAX_LENGTH} bytes")
            return None
        if buffer[newline - 1] != 0x0D:
            raise ProxyProtocolError("PROXY v1 header line ends in a bare LF, not CRLF")
        self._parse_v1(bytes(buffer[: newline - 1]))
        return self._finish(newline + 1)

    def _parse_v1(self, line: bytes) -> None:
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise ProxyProtocolError("PROXY v1 header is not ASCII") from None
        fields = text.split(" ")
        if fields[1] == "UNKNOWN":
            # The sender could not say (e.g. not TCP); whatever follows is ignored.
            self.version, self.command = 1, "LOCAL"
            return
        family = _V1_FAMILIES.get(fields[1])
        if family is None:
            raise ProxyProtocolError(f"PROXY v1 protocol must be TCP4, TCP6 or UNKNOWN, not {fields[1]!r}")
        if len(fields) != 6:
            raise ProxyProtocolError(
                f"PROXY v1 header needs exactly 5 single-space-separated fields after PROXY: {text!r}"
            )
        _, _, source, destination, source_port, destination_port = fields
        self.source = (_v1_address(source, family, fields[1]), _v1_port(source_port))
        self.destination = (_v1_address(destination, family, fields[1]), _v1_port(destination_port))
        self.version, self.command = 1, "PROXY"

    # -- version 2 ------------------------------------------------------------------

    def _feed_v2(self) -> bytes | None:
        buffer = self._buffer
        if len(buffer) < V2_FIXED_LENGTH:
            return None
        version_command, family_transport, length = struct.unpack_from("!BBH", buffer, len(V2_SIGNATURE))
        version, command = version_command >> 4, version_command & 0x0F
        if version != 2:
            raise ProxyProtocolError(f"PROXY v2 header has version {version}, expected 2")
        if command not in _V2_COMMANDS:
            raise ProxyProtocolError(f"PROXY v2 header has unknown command {command:#x}")
        family, transport = family_transport >> 4, family_transport & 0x0F
        if _V2_COMMANDS[command] == "PROXY":
            # LOCAL (health checks from the proxy itself) carries no meaningful address, so
            # its family byte is ignored as the protocol requires; PROXY's must make sense.
            if family not in _V2_ADDRESS_LENGTH or transport > 0x2:
                raise ProxyProtocolError(f"PROXY v2 header has unknown family/transport {family_transport:#04x}")
            needed = _V2_ADDRESS_LENGTH[family]
            if length < needed:
                raise ProxyProtocolError(
                    f"PROXY v2 length {length} is shorter than the {needed}-byte address block of family {family:#x}"
                )
        total = V2_FIXED_LENGTH + length
        if len(buffer) < total:
            return None
        self.version, self.command = 2, _V2_COMMANDS[command]
        if self.command == "PROXY" and transport == _TRANSPORT_STREAM and family in (_AF_INET, _AF_INET6):
            block = bytes(buffer[V2_FIXED_LENGTH:total])
            self.source, self.destination = _v2_addresses(block, family)
        return self._finish(total)


class TrustedSources:
    """The peers allowed to send a PROXY header (``--proxy-trusted``): anyone else could claim any address.

    Unix-socket peers (no address) are on this host, and trusted like loopback.
    An IPv4 peer on a dual-stack socket (``::ffff:10.0.0.1``) is checked as IPv4.
    """

    def __init__(self, networks: tuple[str, ...]) -> None:
        self.anyone = "*" in networks
        self.networks = [ipaddress.ip_network(net) for net in networks if net != "*"]

    def __contains__(self, peer: object) -> bool:
        if self.anyone or not isinstance(peer, tuple):
            return True
        try:
            address = ipaddress.ip_address(peer[0].partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)


def _is_prefix_of(buffer: bytearray, signature: bytes) -> bool:
    """True while the bytes so far could still be (or already are) the start of ``signature``."""
    n = min(len(buffer), len(signature))
    return buffer[:n] == signature[:n]


def _v1_address(text: str, family: type, protocol: str) -> str:
    try:
        if "%" in text:  # a scope id is meaningless to the receiving host
            raise ValueError
        return str(family(text))
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1 {protocol} header has an invalid address {text!r}") from None


def _v1_port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535):
        raise ProxyProtocolError(f"PROXY v1 header has an invalid port {text!r}")
    return int(text)


def _v2_addresses(block: bytes, family: int) -> tuple[tuple[str, int], tuple[str, int]]:
    size = 4 if family == _AF_INET else 16
    address = ipaddress.IPv4Address if family == _AF_INET else ipaddress.IPv6Address
    source, destination = address(block[:size]), address(block[size : 2 * size])
    source_port, destination_port = struct.unpack_from("!HH", block, 2 * size)
    return (str(source), source_port), (str(destination), destination_port)


def _ip_pair(source: tuple[str, int], destination: tuple[str, int]):
    """Both endpoints as ipaddress objects of one family, with their ports checked."""
    # A scope id ("fe80::1%eth0") means nothing to the receiving host and has no place in either format.
    addresses = [ipaddress.ip_address(host.partition("%")[0]) for host, _ in (source, destination)]
    if addresses[0].version != addresses[1].version:
        raise ValueError(f"source {source[0]} and destination {destination[0]} differ in IP version")
    for _, port in (source, destination):
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range 0-65535")
    return addresses


def encode_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A version 1 header, TCP4 or TCP6 according to the addresses."""
    src, dst = _ip_pair(source, destination)
    protocol = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {protocol} {src} {dst} {source[1]} {destination[1]}\r\n".encode("ascii")


def encode_v2(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    """A version 2 header: PROXY command, STREAM over INET or INET6 by the addresses, no TLVs."""
    src, dst = _ip_pair(source, destination)
    family = _AF_INET if src.version == 4 else _AF_INET6
    block = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family << 4 | _TRANSPORT_STREAM, len(block)) + block
