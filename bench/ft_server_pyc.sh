#!/usr/bin/env bash
# The thread backend with --cpu-work on free-threaded CPython 3.13, four ways, alternating:
#   nopyc       echoserver imported from source (no .pyc): its constants are mortal
#   nopyc-gil1  the same with -X gil=1
#   pyc         after `python -m compileall echoserver`: constants immortal
#   pyc-gil1    the same with -X gil=1
# and prints msg/s and the server's CPU use for each (docs/free-threading.md says why).
#
#   bench/ft_server_pyc.sh /path/to/ft-venv/bin/python [rounds]
#
# The interpreter's environment must have echoserver installed editable from this checkout
# (pip install -e '.[freethreading]'); echo-load comes from .venv (or ECHO_LOAD=path).
# REALTIME=1 runs server and client under SCHED_FIFO (chrt), for a machine whose cores
# other work keeps busy: without it the two server threads rarely run at the same time.
set -euo pipefail
cd "$(dirname "$0")/.."

FT=${1:?usage: bench/ft_server_pyc.sh FREE_THREADED_PYTHON [ROUNDS]}
ROUNDS=${2:-3}
LOAD=${ECHO_LOAD:-.venv/bin/echo-load}
[[ -x $FT ]] || { echo "ft_server_pyc: $FT is not an executable" >&2; exit 2; }
[[ -x $LOAD ]] || { echo "ft_server_pyc: $LOAD missing (ECHO_LOAD=path to echo-load)" >&2; exit 2; }
"$FT" -c 'import echoserver' 2>/dev/null \
    || { echo "ft_server_pyc: echoserver is not importable by $FT" >&2; exit 2; }
server_rt=() client_rt=()
if [[ ${REALTIME:-0} == 1 ]]; then server_rt=(chrt -f 10); client_rt=(chrt -f 20); fi

drop_pyc() { find echoserver -name '*.cpython-313*.pyc' -delete; }
# Leave the checkout byte-compiled, the state tools/python/venv.sh sets up.
trap '"$FT" -m compileall -q echoserver >/dev/null' EXIT

run() { # label, extra interpreter options...
    local label=$1 log pid port out
    shift
    log=$(mktemp)
    PYTHONDONTWRITEBYTECODE=1 "${server_rt[@]}" "$FT" "$@" -m echoserver --backend thread \
        --port 0 --cpu-work 5000 --log-level warning >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
    port=$(grep -oE 'listening on 127\.0\.0\.1:[0-9]+' "$log" | cut -d: -f2) \
        || { cat "$log" >&2; kill "$pid"; exit 1; }
    out=$("${client_rt[@]}" "$LOAD" --port "$port" --clients 8 --threads 1 --duration 5 \
        --warmup 1 --server-pid "$pid" --json)
    kill "$pid"
    wait "$pid" || true
    rm -f "$log"
    python3 -c 'import json, sys
d = json.loads(sys.argv[2]); rate, ok = d["msgs_per_s"], d["ok"]
cpu = (d.get("server") or {}).get("cpu_percent")
print(f"{sys.argv[1]:<11} {rate:>8.0f} msg/s  server CPU {cpu}%  ok={ok}")' "$label" "$out"
}

echo "# $("$FT" -VV | head -n1); thread backend, --cpu-work 5000, 8 clients, 5 s;" \
     "load average $(cut -d' ' -f1 /proc/loadavg); REALTIME=${REALTIME:-0}"
for ((round = 1; round <= ROUNDS; round++)); do
    drop_pyc
    run nopyc
    run nopyc-gil1 -X gil=1
    "$FT" -m compileall -q echoserver
    run pyc
    run pyc-gil1 -X gil=1
done
