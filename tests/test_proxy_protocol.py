"""The PROXY protocol reader and encoders, tested with no network at all."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from echoserver.sansio.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeaderReader,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
)

ENCODERS = {1: encode_v1, 2: encode_v2}
IPV4 = (("203.0.113.7", 51234), ("198.51.100.1", 7))
IPV6 = (("2001:db8::7", 51234), ("2001:db8:ffff::1", 7))


def read_stream(chunks, mode: str = "optional") -> tuple[ProxyHeaderReader, bytes]:
    """What a connection does: feed the reader until it decides, then pass the rest through."""
    reader, payload, decided = ProxyHeaderReader(mode), None, False
    for chunk in chunks:
        if decided:
            payload += chunk
            continue
        payload = reader.feed(chunk)
        decided = payload is not None
    assert decided, "the reader never decided"
    return reader, payload


def split_at(data: bytes, cuts) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def v2_header(version_command=0x21, family_transport=0x11, length=12, block=None) -> bytes:
    block = bytes(length) if block is None else block
    return V2_SIGNATURE + struct.pack("!BBH", version_command, family_transport, length) + block


def rejects(stream: bytes, match: str, mode: str = "required") -> None:
    reader = ProxyHeaderReader(mode)
    with pytest.raises(ProxyProtocolError, match=match) as caught:
        reader.feed(stream)
    assert "\n" not in str(caught.value)


endpoints = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.ip_addresses(v=4)),
    st.tuples(st.ip_addresses(v=6), st.ip_addresses(v=6)),
)
ports = st.integers(0, 65535)


# -- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("pair", [IPV4, IPV6], ids=["ipv4", "ipv6"])
def test_encoded_header_reads_back(version, pair) -> None:
    source, destination = pair
    reader, payload = read_stream([ENCODERS[version](source, destination) + b"hello"], "required")
    assert (reader.version, reader.command) == (version, "PROXY")
    assert (reader.source, reader.destination) == (source, destination)
    assert payload == b"hello"


@given(
    version=st.sampled_from([1, 2]),
    addresses=endpoints,
    source_port=ports,
    destination_port=ports,
    payload=st.binary(max_size=200),
    cuts=st.lists(st.integers(0, 400), max_size=12),
    mode=st.sampled_from(["optional", "required"]),
)
def test_any_chunking_yields_the_header_and_the_payload_exactly_once(
    version, addresses, source_port, destination_port, payload, cuts, mode
) -> None:
    source, destination = (str(addresses[0]), source_port), (str(addresses[1]), destination_port)
    stream = ENCODERS[version](source, destination) + payload
    reader, received = read_stream(split_at(stream, cuts), mode)
    assert received == payload
    assert (reader.version, reader.source, reader.destination) == (version, source, destination)


@pytest.mark.parametrize("version", [1, 2])
def test_one_byte_at_a_time(version) -> None:
    stream = ENCODERS[version](*IPV6) + b"xy"
    reader = ProxyHeaderReader("required")
    header_length = len(stream) - 2
    results = [reader.feed(stream[i : i + 1]) for i in range(header_length)]
    assert results[:-1] == [None] * (header_length - 1)
    assert results[-1] == b""
    assert reader.source == IPV6[0]


def test_payload_in_the_same_chunk_as_the_header_is_returned() -> None:
    reader = ProxyHeaderReader("required")
    assert reader.feed(encode_v1(*IPV4) + b"GET / HTTP/1.0\r\n\r\n") == b"GET / HTTP/1.0\r\n\r\n"


# -- encoders ---------------------------------------------------------------------


def test_encode_v1_text() -> None:
    assert encode_v1(*IPV4) == b"PROXY TCP4 203.0.113.7 198.51.100.1 51234 7\r\n"
    assert encode_v1(*IPV6) == b"PROXY TCP6 2001:db8::7 2001:db8:ffff::1 51234 7\r\n"


def test_encode_v2_bytes_match_what_haproxy_sends() -> None:
    header = encode_v2(("172.19.0.1", 42578), ("172.19.0.3", 80))
    assert header.hex() == "0d0a0d0a000d0a515549540a2111000cac130001ac130003a6520050"


def test_encode_v2_ipv6_is_inet6_stream_with_a_36_byte_block() -> None:
    header = encode_v2(*IPV6)
    assert header[12:16] == bytes([0x21, 0x21, 0, 36]) and len(header) == 16 + 36


@pytest.mark.parametrize("encode", [encode_v1, encode_v2])
def test_encoders_refuse_mixed_families_and_bad_ports(encode) -> None:
    with pytest.raises(ValueError, match="IP version"):
        encode(("192.0.2.1", 1), ("2001:db8::1", 2))
    with pytest.raises(ValueError, match="65536"):
        encode(("192.0.2.1", 65536), ("192.0.2.2", 2))
    with pytest.raises(ValueError):
        encode(("example.com", 1), ("192.0.2.2", 2))


# -- optional and required --------------------------------------------------------


def test_plain_client_is_decided_at_once() -> None:
    reader = ProxyHeaderReader("optional")
    assert reader.feed(b"hi") == b"hi"
    assert (reader.version, reader.command, reader.source, reader.destination) == (None,) * 4


@pytest.mark.parametrize(
    "chunks",
    [
        [b"P", b"ing"],
        [b"PR", b"IVMSG #x\r\n"],
        [b"PROXY", b"\r\n"],
        [b"\r", b"x"],
        [b"\r\n\r", b"\r"],
        [b"\r\n\r\n\x00\r\nQUI", b"T\r"],
    ],
)
def test_optional_waits_only_while_the_bytes_could_start_a_header(chunks) -> None:
    reader = ProxyHeaderReader("optional")
    assert reader.feed(chunks[0]) is None
    assert reader.feed(chunks[1]) == b"".join(chunks)
    assert reader.version is None


def test_empty_feed_decides_nothing() -> None:
    assert ProxyHeaderReader("optional").feed(b"") is None


@st.composite
def diverging_streams(draw) -> bytes:
    """A stream that follows one signature for a while, then leaves it (and so both)."""
    signature = draw(st.sampled_from([b"PROXY ", V2_SIGNATURE]))
    n = draw(st.integers(0, len(signature) - 1))
    first_bytes = {b"P"[0], b"\r"[0]}
    byte = draw(st.integers(0, 255).filter(lambda b: b != signature[n] and (n or b not in first_bytes)))
    return signature[:n] + bytes([byte]) + draw(st.binary(max_size=50))


@given(diverging_streams(), st.lists(st.integers(0, 100), max_size=5))
def test_optional_passes_every_diverging_stream_through_untouched(stream, cuts) -> None:
    reader, payload = read_stream(split_at(stream, cuts))
    assert payload == stream and reader.version is None


@given(diverging_streams())
def test_required_rejects_every_diverging_stream(stream) -> None:
    with pytest.raises(ProxyProtocolError, match="no PROXY protocol header"):
        ProxyHeaderReader("required").feed(stream)


@pytest.mark.parametrize("stream", [b"hi", b"PRIVMSG #x\r\n", b"\r\nhello", b"proxy TCP4 "])
def test_required_rejects_a_plain_client(stream) -> None:
    rejects(stream, "no PROXY protocol header")


def test_required_waits_while_the_bytes_could_start_a_header() -> None:
    assert ProxyHeaderReader("required").feed(b"PROX") is None


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="optional, required"):
        ProxyHeaderReader("off")


def test_error_is_a_value_error() -> None:
    assert issubclass(ProxyProtocolError, ValueError)


# -- version 1 --------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ::1 192.0.2.1 1 2 whatever\r\n"])
def test_v1_unknown_carries_no_addresses(line) -> None:
    reader, payload = read_stream([line + b"data"], "required")
    assert (reader.version, reader.command, reader.source, reader.destination) == (1, "LOCAL", None, None)
    assert payload == b"data"


def test_v1_line_of_exactly_107_bytes_is_accepted() -> None:
    line = b"PROXY UNKNOWN " + b"x" * (107 - 16) + b"\r\n"
    assert len(line) == 107
    assert ProxyHeaderReader("required").feed(line + b"!") == b"!"


@pytest.mark.parametrize("stream", [b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n", b"PROXY TCP4 " + b"1" * 200])
def test_v1_line_longer_than_107_bytes_is_rejected(stream) -> None:
    rejects(stream, "no CRLF within 107 bytes")


def test_v1_too_long_is_detected_without_waiting_for_more() -> None:
    reader = ProxyHeaderReader("optional")
    assert reader.feed(b"PROXY TCP4 " + b"1" * 95) is None
    with pytest.raises(ProxyProtocolError):
        reader.feed(b"1")


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 256.0.0.1 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 192.0.2.01 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",
        b"PROXY TCP6 2001:db8::1 192.0.2.1 1 2\r\n",
        b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n",
        b"PROXY TCP4 example.com 192.0.2.1 1 2\r\n",
    ],
)
def test_v1_bad_address_is_rejected(line) -> None:
    rejects(line, "invalid address")


@pytest.mark.parametrize("port", [b"65536", b"-1", b"+80", b"8o", b"999999", b"\xd9\xa1"])
def test_v1_bad_port_is_rejected(port) -> None:
    rejects(b"PROXY TCP4 192.0.2.1 192.0.2.2 " + port + b" 80\r\n", "invalid port|not ASCII")


@pytest.mark.parametrize(
    "line, match",
    [
        (b"PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n", "exactly 5"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n", "exactly 5"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n", "exactly 5"),
        (b"PROXY TCP4\t192.0.2.1 192.0.2.2 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY \r\n", "TCP4, TCP6 or UNKNOWN"),
        (b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", "bare LF"),
        (b"PROXY TCP4 192.0.2.\xff 192.0.2.2 1 2\r\n", "not ASCII"),
    ],
)
def test_v1_malformed_line_is_rejected(line, match) -> None:
    rejects(line, match, mode="optional")


def test_v1_ports_at_the_limits() -> None:
    reader, _ = read_stream([b"PROXY TCP4 192.0.2.1 192.0.2.2 0 65535\r\n"])
    assert (reader.source, reader.destination) == (("192.0.2.1", 0), ("192.0.2.2", 65535))


# -- version 2 --------------------------------------------------------------------


def test_v2_local_carries_no_addresses() -> None:
    reader, payload = read_stream([v2_header(0x20, 0x00, 0) + b"ping"], "required")
    assert (reader.version, reader.command, reader.source, reader.destination) == (2, "LOCAL", None, None)
    assert payload == b"ping"


def test_v2_local_ignores_the_family_and_skips_the_block() -> None:
    reader, payload = read_stream([v2_header(0x20, 0x11, 12, bytes(range(12))) + b"ping"])
    assert (reader.command, reader.source, payload) == ("LOCAL", None, b"ping")


@pytest.mark.parametrize("family_transport, length", [(0x31, 216), (0x00, 0), (0x12, 12), (0x10, 12)])
def test_v2_families_without_a_tcp_address_are_accepted_without_one(family_transport, length) -> None:
    reader, payload = read_stream([v2_header(0x21, family_transport, length) + b"ping"], "required")
    assert (reader.version, reader.command, reader.source, reader.destination) == (2, "PROXY", None, None)
    assert payload == b"ping"


def test_v2_tlvs_after_the_address_block_are_skipped() -> None:
    header = encode_v2(*IPV4)
    tlvs = bytes([0x01, 0x00, 0x02]) + b"h2" + bytes([0x04, 0x00, 0x00])
    block = header[16:] + tlvs
    stream = header[:14] + struct.pack("!H", len(block)) + block + b"payload"
    reader, payload = read_stream(split_at(stream, [3, 17, 30]), "required")
    assert (reader.source, reader.destination, payload) == (*IPV4, b"payload")


def test_v2_largest_header_the_length_field_allows() -> None:
    stream = v2_header(0x21, 0x21, 65535) + b"tail"
    reader, payload = read_stream([stream[:1000], stream[1000:]], "required")
    assert reader.source == ("::", 0) and payload == b"tail"


@pytest.mark.parametrize("signature", [V2_SIGNATURE[:11] + b"X", V2_SIGNATURE[:5] + b"\x01"])
def test_v2_bad_signature_after_the_prefix(signature) -> None:
    rejects(signature + bytes(20), "no PROXY protocol header")
    reader, payload = read_stream([signature])
    assert reader.version is None and payload == signature


@pytest.mark.parametrize("version_command", [0x11, 0x31, 0x01, 0xF1])
def test_v2_bad_version_is_rejected(version_command) -> None:
    rejects(v2_header(version_command), "version")


@pytest.mark.parametrize("version_command", [0x22, 0x2F])
def test_v2_bad_command_is_rejected(version_command) -> None:
    rejects(v2_header(version_command), "command")


@pytest.mark.parametrize("family_transport", [0x41, 0xF1, 0x13, 0x1F])
def test_v2_unknown_family_or_transport_is_rejected(family_transport) -> None:
    rejects(v2_header(family_transport=family_transport, length=216), "family/transport")


@pytest.mark.parametrize("family_transport, length", [(0x11, 11), (0x21, 35), (0x21, 12), (0x31, 215)])
def test_v2_length_too_short_for_the_family_is_rejected(family_transport, length) -> None:
    rejects(v2_header(family_transport=family_transport, length=length), "shorter than")


def test_v2_length_is_checked_before_the_block_arrives() -> None:
    reader = ProxyHeaderReader("required")
    assert reader.feed(V2_SIGNATURE + b"\x21") is None
    with pytest.raises(ProxyProtocolError, match="shorter than"):
        reader.feed(b"\x21\x00\x0c")


# -- robustness -------------------------------------------------------------------


@given(
    st.one_of(
        st.binary(max_size=120),
        st.binary(max_size=120).map(lambda b: b"PROXY " + b),
        st.binary(max_size=120).map(lambda b: V2_SIGNATURE + b),
        st.text(alphabet="PROXYTCP46UNKW :.0123456789abcdef\r\n", max_size=110).map(str.encode),
    ),
    st.lists(st.integers(0, 130), max_size=6),
    st.sampled_from(["optional", "required"]),
)
def test_arbitrary_input_yields_a_decision_or_a_protocol_error(stream, cuts, mode) -> None:
    reader, fed = ProxyHeaderReader(mode), b""
    try:
        for chunk in split_at(stream, cuts):
            fed += chunk
            payload = reader.feed(chunk)
            if payload is not None:
                assert fed.endswith(payload)
                break
    except ProxyProtocolError as error:
        assert "\n" not in str(error)


# -- the answer does not depend on how the bytes were split ----------------------------


def outcome(chunks: list[bytes], mode: str) -> tuple:
    """Everything the reader decides for a stream cut into ``chunks``: the fields and the bytes after the
    header, or the error; ("undecided",) if the bytes never sufficed."""
    reader = ProxyHeaderReader(mode)
    try:
        for i, chunk in enumerate(chunks):
            payload = reader.feed(chunk)
            if payload is not None:
                rest = payload + b"".join(chunks[i + 1 :])
                return ("decided", reader.version, reader.command, reader.source, reader.destination, rest)
    except ProxyProtocolError as error:
        return ("error", str(error).split(":")[0])  # not the quoted bytes seen so far, which depend on the split
    return ("undecided",)


headerish = st.one_of(
    st.binary(max_size=130),
    st.binary(max_size=120).map(lambda b: b"PROXY " + b),
    st.binary(max_size=120).map(lambda b: V2_SIGNATURE + b),
    st.text(alphabet="PROXYTCP46UNKW :.0123456789\r\n", max_size=120).map(lambda t: ("PROXY " + t).encode()),
    st.builds(lambda pair, tail: encode_v1(*pair) + tail, st.sampled_from([IPV4, IPV6]), st.binary(max_size=20)),
    # v1 lines made of the tokens a header is made of, line ends of every kind among them.
    st.lists(
        st.sampled_from(["UNKNOWN", "TCP4", "TCP6", " ", "x", "1.2.3.4", "::1", "80", "\n", "\r", "\r\n"]), max_size=12
    ).map(lambda tokens: ("PROXY " + "".join(tokens)).encode()),
)


@example(b"PROXY UNKNOWN x\ny\r\n", [16], "optional")  # issue 13: accepted whole, refused byte by byte
@given(headerish, st.lists(st.integers(0, 140), max_size=8), st.sampled_from(["optional", "required"]))
def test_the_answer_does_not_depend_on_how_the_bytes_are_split(stream, cuts, mode) -> None:
    assert outcome(split_at(stream, cuts), mode) == outcome([stream], mode)


@pytest.mark.parametrize("mode", ["optional", "required"])
def test_a_bare_lf_inside_a_v1_line_is_refused_whole_or_byte_by_byte(mode) -> None:
    stream = b"PROXY UNKNOWN x\ny\r\n"
    whole, trickled = outcome([stream], mode), outcome([bytes([b]) for b in stream], mode)
    assert whole == trickled and whole[0] == "error" and "bare LF" in whole[1]


# -- peeking readers take only the header off the stream ------------------------------


@given(
    st.sampled_from([1, 2]),
    st.sampled_from([IPV4, IPV6]),
    st.binary(max_size=50),
    st.lists(st.integers(0, 200), max_size=6),
)
def test_take_leaves_exactly_the_payload_in_the_stream(version, pair, payload, cuts) -> None:
    """What an I/O layer that peeks sees: the bytes it takes are the header, no more, however they arrive."""
    stream = ENCODERS[version](*pair) + payload
    reader, taken = ProxyHeaderReader("required"), 0
    for chunk in split_at(stream, cuts):
        peeked = stream[taken : taken + len(chunk)] if not reader.done else b""
        if not peeked:
            continue
        taken += reader.take(peeked)
        if reader.done:
            break
    assert reader.done and reader.leftover == b""
    assert stream[taken:] == payload and reader.source == pair[0]


def test_take_hands_back_what_looked_like_a_signature_in_optional_mode() -> None:
    reader = ProxyHeaderReader("optional")
    assert reader.take(b"PRO") == 3 and not reader.done  # could still be a header: taken
    assert reader.take(b"MPT") == 0 and reader.done  # it was not: nothing more taken...
    assert reader.leftover == b"PRO"  # ...and the first bytes go to the handler first


def test_trusted_sources() -> None:
    from echoserver.sansio.proxy_protocol import TrustedSources

    loopback = TrustedSources(("127.0.0.0/8", "::1/128"))
    assert ("127.0.0.1", 1) in loopback and ("::1", 1, 0, 0) in loopback
    assert ("::ffff:127.0.0.1", 1, 0, 0) in loopback  # IPv4 on a dual-stack socket
    assert ("10.0.0.1", 1) not in loopback and ("2001:db8::1", 1, 0, 0) not in loopback
    assert "" in loopback  # a Unix-socket peer is on this host
    assert ("203.0.113.9", 1) in TrustedSources(("*",))
