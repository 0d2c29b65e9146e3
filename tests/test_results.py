"""Load results merge exactly: histograms and counters add, rates add, percentiles are never averaged."""

from __future__ import annotations

import pytest

from echoclients.load.results import LatencyRecorder, decode, encode, fairness, finish, merge, new_histogram


def part(
    latencies_us: list[int],
    *,
    messages: int,
    duration: float = 10.0,
    errors: dict | None = None,
    backend: str = "uvloop",
    cpu: list[float] | None = None,
) -> dict:
    recorder = LatencyRecorder()
    for value in latencies_us:
        recorder.record(value * 1000)
    connect = new_histogram()
    connect.record_value(50_000)
    return finish(
        {
            "schema": "echo-load/1",
            "backend": backend,
            "target": "127.0.0.1:8080",
            "clients": 2,
            "processes": 1,
            "threads": 1,
            "messages": messages,
            "bytes": messages * 64,
            "mismatches": 0,
            "duration_s": duration,
            "errors": errors or {},
            "per_connection": [messages // 2, messages - messages // 2],
            "histogram": encode(recorder.fold()),
            "connect_histogram": encode(connect),
            "cpu": {"per_process_percent": cpu or [50.0], "saturated": False},
        }
    )


def test_merged_percentiles_come_from_the_summed_histogram_not_from_averaging() -> None:
    fast, slow = part([100] * 99, messages=99), part([10_000], messages=1)
    merged = merge([fast, slow])
    # 100 values: 99 at 100 us and one at 10 ms. p50 and p99 are 100 us; an average of the
    # parts' p99s would claim ~5 ms.
    assert merged["latency_us"]["p50"] == pytest.approx(100, rel=0.01)
    assert merged["latency_us"]["p99"] == pytest.approx(100, rel=0.01)
    assert merged["latency_us"]["max"] == pytest.approx(10_000, rel=0.01)
    assert decode(merged["histogram"]).get_total_count() == 100


def test_counters_and_rates_add_and_the_window_is_the_longest() -> None:
    merged = merge([part([100], messages=1000, duration=10.0), part([100], messages=500, duration=5.0)])
    assert (merged["messages"], merged["bytes"], merged["clients"]) == (1500, 1500 * 64, 4)
    assert merged["duration_s"] == 10.0
    assert merged["msgs_per_s"] == pytest.approx(100.0 + 100.0)  # each part's rate over its own window
    assert merged["parts"] == 2
    assert merged["fairness"]["connections"] == 4


def test_errors_add_by_kind_and_any_error_makes_the_merge_not_ok() -> None:
    merged = merge(
        [part([100], messages=1, errors={"reset": 2}), part([100], messages=1, errors={"reset": 1, "timeout": 1})]
    )
    assert merged["errors"] == {"reset": 3, "timeout": 1}
    assert merged["ok"] is False
    assert merge([part([100], messages=1), part([100], messages=1)])["ok"] is True


def test_labels_survive_only_when_every_part_agrees() -> None:
    assert merge([part([1], messages=1), part([1], messages=1)])["backend"] == "uvloop"
    assert merge([part([1], messages=1), part([1], messages=1, backend="gevent")])["backend"] is None


def test_cpu_stays_per_process() -> None:
    merged = merge([part([1], messages=1, cpu=[40.0]), part([1], messages=1, cpu=[60.0, 70.0])])
    assert merged["cpu"]["per_process_percent"] == [40.0, 60.0, 70.0]
    assert merged["cpu"]["client_percent"] == 170.0


def test_merging_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        merge([])


def test_the_recorder_buckets_latencies_finely_enough_for_three_digits() -> None:
    recorder = LatencyRecorder()
    for value_ns in (10_000, 10_000, 250_000, 1_000_000_000):
        recorder.record(value_ns)
    histogram = recorder.fold()
    assert histogram.get_total_count() == 4
    assert histogram.get_value_at_percentile(50) == pytest.approx(10_000, rel=0.01)
    assert histogram.get_max_value() == pytest.approx(1_000_000_000, rel=0.001)
    assert len(recorder.values) == 0  # folded values leave the buffer


def test_fairness_counts_starved_connections() -> None:
    assert fairness([0, 0, 10, 30], 10.0) == {
        "connections": 4,
        "served": 2,
        "rate_min": 0.0,
        "rate_median": 0.5,
        "rate_max": 3.0,
    }
