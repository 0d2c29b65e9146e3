"""The result of a load run: latency histograms, counters, and exact merging.

A result is a plain JSON-able dict, the same shape whether it comes from one
thread, one process, one machine or the merge of several machines' ``--json``
outputs. Merging never averages percentiles: it adds the encoded HDR
histograms and reads the percentiles off the sum. Rates add up, because the
parts ran side by side over the same window.
"""

from __future__ import annotations

import statistics
from array import array
from collections import Counter
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from echoserver.observability.gil import describe

SCHEMA = "echo-load/1"
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}
_LOWEST_NS, _HIGHEST_NS, _DIGITS = 1, 3_600 * 10**9, 3
# Latencies are bucketed to 64 ns before they reach the histogram: far finer
# than its three significant digits for anything above 6 us.
_QUANTUM_SHIFT = 6


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_NS, _HIGHEST_NS, _DIGITS)


class LatencyRecorder:
    """Nanosecond latencies appended to a flat array, folded into an HDR histogram later.

    ``HdrHistogram.record_value`` costs about a microsecond in Python, as
    much as a whole loopback round trip's worth of client work; appending to
    an ``array`` costs a few tens of nanoseconds. The array is folded into the
    histogram when it grows large and at the end of the run, outside the
    measured window.
    """

    FOLD_AT = 1 << 22  # 32 MiB of int64 per worker thread at most

    def __init__(self) -> None:
        self.values = array("q")
        self.histogram = new_histogram()
        self.record = self.values.append  # the hot path calls this directly

    def clear(self) -> None:
        del self.values[:]
        self.histogram.reset()

    def fold(self) -> HdrHistogram:
        """Move the buffered values into the histogram and return it."""
        counts = Counter(v >> _QUANTUM_SHIFT for v in self.values)
        half = 1 << (_QUANTUM_SHIFT - 1)
        for bucket, count in counts.items():
            self.histogram.record_value(min(max((bucket << _QUANTUM_SHIFT) + half, _LOWEST_NS), _HIGHEST_NS), count)
        del self.values[:]
        return self.histogram

    def maybe_fold(self) -> None:
        if len(self.values) >= self.FOLD_AT:
            self.fold()


def encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def decode(encoded: str) -> HdrHistogram:
    histogram = new_histogram()
    if encoded:
        histogram.decode_and_add(encoded)
    return histogram


def summarize_us(histogram: HdrHistogram) -> dict:
    """Percentiles and max in microseconds (``None`` when nothing was recorded)."""
    if histogram.get_total_count() == 0:
        return {**{name: None for name in PERCENTILES}, "max": None}
    summary = {name: round(histogram.get_value_at_percentile(p) / 1000, 1) for name, p in PERCENTILES.items()}
    summary["max"] = round(histogram.get_max_value() / 1000, 1)
    return summary


def fairness(per_connection: list[int], duration_s: float) -> dict:
    """How evenly the server shared itself out: connections served, and per-connection rates."""
    rates = sorted(count / duration_s for count in per_connection) if duration_s > 0 else []
    return {
        "connections": len(per_connection),
        "served": sum(1 for count in per_connection if count),
        "rate_min": round(rates[0], 1) if rates else None,
        "rate_median": round(statistics.median(rates), 1) if rates else None,
        "rate_max": round(rates[-1], 1) if rates else None,
    }


def finish(result: dict) -> dict:
    """Fill in every derived field (rates, percentiles, fairness) from the raw ones."""
    duration = result["duration_s"]
    latency = decode(result["histogram"])
    result["msgs_per_s"] = round(result["messages"] / duration, 1) if duration > 0 else 0.0
    result["mb_per_s"] = round(result["bytes"] / duration / 1e6, 3) if duration > 0 else 0.0
    result["latency_us"] = summarize_us(latency)
    result["connect_us"] = summarize_us(decode(result["connect_histogram"]))
    result["fairness"] = fairness(result["per_connection"], duration)
    result["ok"] = not result["errors"] and not result["mismatches"]
    growth = (result.get("cpu") or {}).get("per_process_rss_growth")
    if growth and result["clients"]:  # echo-load's own memory for its connections (RSS growth while connecting)
        result["client_bytes_per_connection"] = round(sum(growth) / result["clients"])
    if "lateness_histogram" in result:  # an open loop: how late the client itself sent
        result["send_lateness_us"] = late = summarize_us(decode(result["lateness_histogram"]))
        result["client_late"] = (
            late["p99"] is not None
            and result["latency_us"]["p99"] is not None
            and late["p99"] > CLIENT_LATE_SHARE * result["latency_us"]["p99"]
        )
    result.setdefault("python", describe())  # the load generator's own interpreter and GIL state
    return result


# Send lateness is part of every open-loop latency; past this share of the p99 it is not small.
CLIENT_LATE_SHARE = 0.25

_SUMMED = ("clients", "processes", "threads", "messages", "bytes", "mismatches", "reconnects")


def merge(results: list[dict]) -> dict:
    """Combine results of runs that loaded the same server side by side.

    Counters add, histograms add, the window is the longest of the parts;
    the rate is the sum of the parts' rates (each over its own window), so
    two machines that each pushed 50k msg/s for 10 s merge to 100k msg/s.
    """
    if not results:
        raise ValueError("nothing to merge")
    first = results[0]
    merged = {key: value for key, value in first.items() if not isinstance(value, (dict, list))}
    for key in _SUMMED:
        merged[key] = sum(part.get(key, 0) for part in results)
    merged["duration_s"] = max(part["duration_s"] for part in results)
    merged["backend"] = _same(results, "backend")
    merged["target"] = _same(results, "target")
    merged["errors"] = dict(sum((Counter(part["errors"]) for part in results), Counter()))
    merged["per_connection"] = [count for part in results for count in part["per_connection"]]
    merged["histogram"] = _add_histograms(part["histogram"] for part in results)
    merged["connect_histogram"] = _add_histograms(part["connect_histogram"] for part in results)
    if any("lateness_histogram" in part for part in results):
        merged["lateness_histogram"] = _add_histograms(part.get("lateness_histogram") for part in results)
    merged["cpu"] = _merge_cpu([part.get("cpu") or {} for part in results])
    merged["server"] = _same(results, "server")
    merged["python"] = _same(results, "python")
    merged["hot_loop"] = _same(results, "hot_loop")
    merged["client_bound"] = any(part.get("client_bound") for part in results)
    merged["parts"] = len(results)
    merged["timeline"] = _add_timelines([part.get("timeline") for part in results])
    merged["window_wall"], merged["overlap"] = _overlap([part.get("window_wall") for part in results])
    finish(merged)
    rate = sum(part["messages"] / part["duration_s"] for part in results if part["duration_s"] > 0)
    merged["msgs_per_s"] = round(rate, 1)
    merged["mb_per_s"] = round(
        sum(part["bytes"] / part["duration_s"] for part in results if part["duration_s"] > 0) / 1e6, 3
    )
    return merged


def _same(results: list[dict], key: str):
    values = {repr(part.get(key)) for part in results}
    return results[0].get(key) if len(values) == 1 else None


def _overlap(windows: list) -> tuple[list | None, float | None]:
    """The span of the parts' windows, and the share of the shortest one that all of them shared.

    1.0: every part measured at the same time; 0 or less: some part ran
    before another started, and adding their rates describes no moment at all.
    """
    known = [w for w in windows if w]
    if not known or len(known) < len(windows):
        return (None, None) if not known else ([min(w[0] for w in known), max(w[1] for w in known)], None)
    common = min(w[1] for w in known) - max(w[0] for w in known)
    shortest = min(w[1] - w[0] for w in known)
    share = round(common / shortest, 3) if shortest > 0 else None
    return [min(w[0] for w in known), max(w[1] for w in known)], share


def _add_timelines(timelines: list) -> dict | None:
    """Second by second, the parts' rates add up (parts started together, as for the rates)."""
    series = [t["msgs_per_s"] for t in timelines if t]
    if not series:
        return None
    length = max(len(s) for s in series)
    return {"interval_s": 1.0, "msgs_per_s": [round(sum(s[i] for s in series if i < len(s)), 1) for i in range(length)]}


def _add_histograms(encoded: Iterable[str | None]) -> str:
    total = new_histogram()
    for item in encoded:
        if item:
            total.decode_and_add(item)
    return encode(total)


def _merge_cpu(parts: list[dict]) -> dict:
    """Per-process CPU figures stay per process: saturation is a per-process fact."""
    per_process = [p for part in parts for p in part.get("per_process_percent", [])]
    growth = [n for part in parts for n in part.get("per_process_rss_growth", [])]
    return {
        "per_process_percent": per_process,
        "client_percent": round(sum(per_process), 1),
        "saturated": any(part.get("saturated") for part in parts),
    } | ({"per_process_rss_growth": growth} if growth else {})
