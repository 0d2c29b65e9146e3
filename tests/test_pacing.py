"""Pacing decides, sans IO, how long a reply waits, whether it is cut or reset, and in what pieces."""

from __future__ import annotations

import random

import pytest

from echoserver.config import ServerConfig
from echoserver.sansio.faults import TRICKLE_STEPS_PER_S, Pacing, describe


def pacing(**options: object) -> Pacing:
    return Pacing(ServerConfig(**options), random.Random(7))


def test_io_delay_is_paid_once_per_message() -> None:
    assert pacing(io_delay=20).wait_before_reply(3) == pytest.approx(0.060)
    assert pacing(io_delay=20).wait_before_reply(0) == 0.0


def test_injected_delay_stays_within_its_jitter_and_is_paid_once_per_reply() -> None:
    paced = pacing(delay=(50.0, 10.0))
    waits = [paced.wait_before_reply(4) for _ in range(2000)]
    assert all(0.040 <= wait <= 0.060 for wait in waits)
    assert max(waits) - min(waits) > 0.015  # it really varies: a jitter, not a constant
    assert paced.wait_before_reply(0) == 0.0  # nothing to reply to, nothing to delay


def test_io_delay_and_injected_delay_add_up() -> None:
    assert pacing(io_delay=10, delay=(5.0, 0.0)).wait_before_reply(2) == pytest.approx(0.025)


@pytest.mark.parametrize("probability, expected", [(0.0, 0), (1.0, 1000)])
def test_reset_probability_zero_never_and_one_always(probability, expected) -> None:
    paced = pacing(reset_probability=probability)
    assert sum(paced.reset_now() for _ in range(1000)) == expected


def test_reset_probability_is_a_probability() -> None:
    paced = pacing(reset_probability=0.25)
    resets = sum(paced.reset_now() for _ in range(20_000))
    assert 4_500 < resets < 5_500


def test_the_byte_budget_cuts_the_reply_that_spends_it_and_says_so() -> None:
    paced = pacing(max_bytes_per_connection=10)
    assert paced.allow(b"abcdef") == (b"abcdef", False)
    assert paced.allow(b"ghijkl") == (b"ghij", True)


def test_without_a_budget_every_reply_goes_whole() -> None:
    paced = pacing()
    assert paced.allow(b"x" * 100_000) == (b"x" * 100_000, False)


def test_without_trickle_a_reply_is_one_piece_with_no_pause() -> None:
    assert list(pacing().pieces(b"hello")) == [(b"hello", 0.0)]


def test_trickle_cuts_the_reply_into_pieces_whose_pauses_add_up_to_the_rate() -> None:
    rate = 1000
    reply = bytes(range(256)) * 10
    pieces = list(pacing(trickle=rate).pieces(reply))
    assert b"".join(bytes(piece) for piece, _ in pieces) == reply
    assert {len(piece) for piece, _ in pieces[:-1]} == {rate // TRICKLE_STEPS_PER_S}
    assert sum(pause for _, pause in pieces) == pytest.approx(len(reply) / rate)


def test_a_very_slow_trickle_still_sends_a_byte_at_a_time() -> None:
    pieces = list(pacing(trickle=1).pieces(b"abc"))
    assert [bytes(piece) for piece, _ in pieces] == [b"a", b"b", b"c"]
    assert [pause for _, pause in pieces] == [1.0, 1.0, 1.0]


def test_describe_names_every_fault_that_is_on_and_nothing_else() -> None:
    assert describe(ServerConfig()) == ""
    line = describe(
        ServerConfig(delay=(50.0, 10.0), reset_probability=0.01, trickle=1000, max_bytes_per_connection=4096)
    )
    assert line == "delay 50ms+/-10ms, reset probability 0.01, trickle 1000 B/s, close after 4096 bytes"
