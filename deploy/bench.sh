#!/bin/sh
# Measure every backend of the running compose stack; used by the `bench`
# service of docker-compose.yml (it runs inside the echoserver image).
#
# Environment:
#   BENCH_TARGETS   "name=host:port ..." (the compose services)
#   BENCH_CLIENTS, BENCH_DURATION (seconds measured per backend, after
#   BENCH_WARMUP seconds not counted), BENCH_SIZE (bytes)
#   BENCH_REPEAT    echo-bench: measure each backend this many times, interleaved (default 1)
#   BENCH_TOOL      auto | echo-bench | echo-load
#                   auto uses echo-bench when it can measure servers that are
#                   already running (--target), else one echo-load per backend.
#   RESULTS_DIR     where results.json, results.md and results.png go
#   BENCH_BASE_IMAGE  the base image the servers were built from, for the record
#
# It runs as whoever `docker compose run --user` says (the image's uid 10001
# by default), and writes only into RESULTS_DIR.
set -eu

targets=${BENCH_TARGETS:?set BENCH_TARGETS to "name=host:port ..."}
clients=${BENCH_CLIENTS:-16}
duration=${BENCH_DURATION:-5}
warmup=${BENCH_WARMUP:-1}
repeat=${BENCH_REPEAT:-1}
size=${BENCH_SIZE:-64}
out=${RESULTS_DIR:-/results}
tool=${BENCH_TOOL:-auto}

mkdir -p "$out" 2>/dev/null || true
if ! [ -d "$out" ] || ! [ -w "$out" ]; then
    echo "bench: cannot write to $out as uid $(id -u); run it as the owner of the results folder:" \
        "mkdir -p results && docker compose --profile bench run --rm --user \"\$(id -u):\$(id -g)\" bench" >&2
    exit 2
fi
# What actually ran: the tag of a base image says which Python it should have,
# not which one it has (CI builds stand-ins; see docs/docker.md).
python=$(python3 -c 'import platform; print(platform.python_version())')
ran="servers and load generator: Python $python in the echoserver image (base ${BENCH_BASE_IMAGE:-unknown})"
echo "bench: $ran" >&2

if [ "$tool" = auto ]; then
    if echo-bench --help 2>/dev/null | grep -q -- '--target'; then
        tool=echo-bench
    else
        tool=echo-load
    fi
fi
echo "bench: $tool, $clients clients x ${duration}s x ${size}B per backend -> $out" >&2

status=0
case $tool in
echo-bench)
    set --
    for target in $targets; do
        set -- "$@" --target "$target"
    done
    echo-bench --scenario echo "$@" \
        --clients "$clients" --duration "$duration" --warmup "$warmup" --size "$size" \
        --repeat "$repeat" --out "$out" || status=$?
    ;;
echo-load)
    runs=$(mktemp -d)
    for target in $targets; do
        name=${target%%=*}
        address=${target#*=}
        echo "bench: $name at $address" >&2
        if ! echo-load --host "${address%:*}" --port "${address##*:}" --backend "$name" \
            --clients "$clients" --duration "$duration" --warmup "$warmup" --size "$size" \
            --quiet --json >"$runs/$name.json"; then
            echo "bench: echo-load reported errors for $name" >&2
            status=1
        fi
    done
    python3 - "$runs" "$out" "$clients" "$duration" "$size" "$ran" $targets <<'PY' || status=1
"""Merge the per-backend echo-load reports into results.json, results.md and results.png."""
import json
import pathlib
import sys

runs, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
clients, duration, size = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
ran = sys.argv[6]
names = [target.split("=", 1)[0] for target in sys.argv[7:]]

results = []
for name in names:
    path = runs / f"{name}.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        report = {"errors": {"no report": 1}, "detail": str(exc)}
    report["label"] = report["backend"] = name
    results.append(report)

# The same shape as echo-bench's results.json: one entry per run under "runs".
summary = {
    "command": "deploy/bench.sh (echo-load per backend)",
    "ran": ran,
    "scenario": "echo",
    "load": {"clients": clients, "duration": duration, "size": size},
    "runs": results,
}
(out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")


def cell(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


lines = [
    f"Echo, {clients} clients, {duration:g} s, {size}-byte messages, over the compose network; {ran}.",
    "",
    "| run | msg/s | MB/s | p50 us | p99 us | p99.9 us | errors | mismatches |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for r in results:
    latency = r.get("latency_us") or {}
    errors = sum((r.get("errors") or {}).values())
    lines.append(
        f"| {r['label']} | {cell(r.get('msgs_per_s'))} | {cell(r.get('mb_per_s'), 2)} "
        f"| {cell(latency.get('p50'))} | {cell(latency.get('p99'))} | {cell(latency.get('p999'))} "
        f"| {errors} | {r.get('mismatches', '-')} |"
    )
(out / "results.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))

try:
    import matplotlib
except ImportError:
    sys.exit(0)  # no chart without matplotlib; the table and JSON are written
matplotlib.use("Agg")
from matplotlib import pyplot as plt

names = [r["label"] for r in results]
fig, (rate, tail) = plt.subplots(1, 2, figsize=(10, 4))
rate.bar(names, [r.get("msgs_per_s") or 0 for r in results], color="tab:blue")
rate.set_title("throughput (messages/s, higher is better)")
tail.bar(names, [(r.get("latency_us") or {}).get("p99") or 0 for r in results], color="tab:orange")
tail.set_title("p99 latency (us, lower is better)")
for axis in (rate, tail):
    axis.tick_params(axis="x", rotation=30)
fig.suptitle(f"echo: {clients} clients, {size}-byte messages, {duration:g} s per backend")
fig.tight_layout()
fig.savefig(out / "results.png", dpi=100)
PY
    rm -rf "$runs"
    ;;
*)
    echo "bench: unknown BENCH_TOOL '$tool' (auto, echo-bench, echo-load)" >&2
    exit 2
    ;;
esac

if [ "$tool" = echo-bench ] && [ -f "$out/results.md" ]; then
    printf '\n%s.\n' "$ran" >>"$out/results.md"
fi
exit "$status"
