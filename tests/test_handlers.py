"""The sans-IO handlers, tested with no network at all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from echoserver.config import ConfigError, ServerConfig
from echoserver.sansio.handlers import EchoHandler, LineHandler, UpperHandler, make_handler


def feed_all(handler, chunks) -> tuple[bytes, int]:
    out, units = b"", 0
    for chunk in chunks:
        reply, n = handler.feed(chunk)
        out += bytes(reply)
        units += n
    return out + handler.eof(), units


@given(st.lists(st.binary(max_size=300), max_size=30))
def test_echo_returns_every_byte_in_order(chunks) -> None:
    out, units = feed_all(EchoHandler(), chunks)
    assert out == b"".join(chunks)
    assert units == len(chunks)


@given(st.lists(st.binary(max_size=300), max_size=30))
def test_upper_changes_ascii_letters_only(chunks) -> None:
    out, _ = feed_all(UpperHandler(), chunks)
    assert out == b"".join(chunks).upper()
    assert len(out) == sum(map(len, chunks))


@given(st.lists(st.binary(max_size=50).map(lambda b: b.replace(b"\n", b"")), max_size=20), st.data())
def test_line_handler_replies_with_whole_lines_whatever_the_chunking(lines, data) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    handler = LineHandler(max_line=1000)
    for chunk in chunks:
        reply, units = handler.feed(chunk)
        assert reply.endswith(b"\n") or reply == b""
        assert units == reply.count(b"\n")
    assert handler.eof() == b""


def test_line_handler_flushes_an_unterminated_tail_at_eof() -> None:
    handler = LineHandler()
    assert handler.feed(b"a\nb") == (b"a\n", 1)
    assert handler.eof() == b"b"


@pytest.mark.parametrize(
    "chunks, before",
    [
        ([b"x" * 11], b""),
        ([b"x" * 6, b"x" * 6], b""),
        ([b"ok\n" + b"y" * 10 + b"\n"], b"ok\n"),
        ([b"a\nbb\n" + b"y" * 11], b"a\nbb\n"),
        ([b"a\n" + b"y" * 11 + b"\nc\n"], b"a\n"),
    ],
)
def test_line_longer_than_max_line_is_refused_and_closes(chunks, before) -> None:
    """The valid lines before the first too long one, even in the same read, are echoed; nothing after it."""
    handler = LineHandler(max_line=10)
    replies = [handler.feed(chunk)[0] for chunk in chunks]
    assert replies[-1] == before + b"ERROR line longer than 10 bytes\n"
    assert handler.closing
    assert handler.feed(b"more\n") == (b"", 0)


def test_a_line_of_exactly_max_line_is_accepted() -> None:
    handler = LineHandler(max_line=10)
    assert handler.feed(b"123456789\n") == (b"123456789\n", 1)
    assert not handler.closing


def test_make_handler_follows_the_config() -> None:
    assert type(make_handler(ServerConfig(handler="upper"))) is UpperHandler
    assert make_handler(ServerConfig(handler="line", max_line=5)).max_line == 5


@pytest.mark.parametrize(
    "field, value",
    [
        ("port", -1),
        ("port", 65536),
        ("pool_size", 0),
        ("max_line", 0),
        ("io_delay", -1),
        ("grace", -0.5),
        ("handler", "shout"),
        ("host", ""),
    ],
)
def test_invalid_config_names_the_option(field, value) -> None:
    with pytest.raises(ConfigError) as error:
        ServerConfig(**{field: value})
    assert error.value.option == field
