"""Counters: per connection without a lock, per process on demand, across processes by shared rows."""

from __future__ import annotations

import os

from echoserver.observability.stats import FIELDS, Publisher, SlotTable, Stats, add, empty, errors_of


def test_live_connections_count_in_the_snapshot_and_move_to_the_totals_when_closed() -> None:
    stats = Stats()
    first, second = stats.opened(), stats.opened()
    first.bytes_in, first.bytes_out, first.messages = 10, 10, 2
    second.bytes_in = 5
    snapshot = stats.snapshot()
    assert (snapshot["accepted"], snapshot["active"], snapshot["closed"]) == (2, 2, 0)
    assert (snapshot["bytes_in"], snapshot["bytes_out"], snapshot["messages"]) == (15, 10, 2)
    stats.closed_connection(first, idle=True, error="reset")
    snapshot = stats.snapshot()
    assert (snapshot["active"], snapshot["closed"], snapshot["idle_closed"]) == (1, 1, 1)
    assert snapshot["bytes_in"] == 15  # nothing lost in the move
    assert errors_of(snapshot) == {"reset": 1}


def test_a_connection_closed_twice_counts_once() -> None:
    stats = Stats()
    conn = stats.opened()
    conn.messages = 3
    stats.closed_connection(conn, error="timeout")
    stats.closed_connection(conn, error="timeout")
    snapshot = stats.snapshot()
    assert (snapshot["closed"], snapshot["messages"], snapshot["error_timeout"]) == (1, 3, 1)


def test_absorbing_a_finished_process_adds_its_counters_but_never_its_active_count() -> None:
    stats = Stats()
    child = {**empty(), "accepted": 1, "closed": 1, "bytes_in": 7, "active": 1}
    stats.absorb(child)
    snapshot = stats.snapshot()
    assert (snapshot["accepted"], snapshot["bytes_in"], snapshot["active"]) == (1, 7, 0)


def test_a_slot_row_holds_every_field_exactly() -> None:
    table = SlotTable(3)
    values = {name: index * 1_000_003 for index, name in enumerate(FIELDS)}
    values["bytes_in"] = (1 << 62) + 1  # 64-bit counters, not 32
    table.write(1, values)
    assert table.read(1) == values
    assert table.read(0) == empty() and table.read(2) == empty()


def test_take_reads_a_row_and_frees_it_for_the_next_process() -> None:
    table = SlotTable(2)
    table.write(0, {**empty(), "messages": 9})
    assert table.take(0)["messages"] == 9
    assert table.read(0) == empty()


def test_total_sums_the_rows_asked_for() -> None:
    table = SlotTable(3)
    for row in range(3):
        table.write(row, {**empty(), "accepted": row + 1, "error_reset": 1})
    assert table.total()["accepted"] == 6
    assert table.total([0, 2])["accepted"] == 4
    assert errors_of(table.total()) == {"reset": 3}


def test_rows_written_by_a_forked_child_are_read_by_the_parent() -> None:
    table = SlotTable(2)
    pid = os.fork()
    if pid == 0:  # the child: write its row and leave at once, as a fork backend child does
        try:
            table.write(1, {**empty(), "accepted": 1, "bytes_out": 42})
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert table.read(1)["bytes_out"] == 42
    assert table.read(0) == empty()


def test_the_publisher_writes_its_last_snapshot_when_stopped() -> None:
    stats, table = Stats(), SlotTable(1)
    publisher = Publisher(stats.snapshot, table, 0, interval=3600).start()
    stats.opened().messages = 5
    publisher.stop()
    assert table.read(0)["messages"] == 5
    assert table.read(0)["active"] == 1


def test_add_sums_field_by_field() -> None:
    total = add({**empty(), "accepted": 1}, {**empty(), "accepted": 2, "messages": 3})
    assert (total["accepted"], total["messages"]) == (3, 3)
