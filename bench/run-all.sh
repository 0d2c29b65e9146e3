#!/usr/bin/env bash
# Every benchmark whose results are committed under bench/results/, in one go (about 15 minutes
# on 2 cores). Run it on a quiet machine: each benchmark pairs or alternates its runs, but a
# machine busy with other work still starves whichever process it likes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results

# Framework cost: each backend against a bare reference server of its model (docs/overhead.md).
python bench/overhead.py

# Why a forked child costs what it does: copy-on-write, page by page (docs/overhead.md).
python bench/fork_memory.py

# The load generator against a compiled epoll client (docs/load.md).
python bench/loadgen_vs_c.py --rounds 9 --duration 3 --markdown "$out/loadgen_vs_c.md"

# Every backend side by side, one table and chart per scenario.
for scenario in echo cpu io many; do
    echo-bench --scenario "$scenario" --out "$out/echo-bench/$scenario"
done

# The GIL made visible: one process against two, CPU-bound and IO-bound (docs/workers.md).
runs=()
for b in thread threadpool fork gevent asyncio uvloop; do
    runs+=(--run "$b-1=$b" --run "$b-2=$b --workers 2")
done
echo-bench --scenario cpu "${runs[@]}" --out "$out/workers-cpu"
echo-bench --scenario io --clients 500 --server-args "--io-delay 50 --max-children 600" \
    "${runs[@]}" --out "$out/workers-io"
