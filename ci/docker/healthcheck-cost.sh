#!/usr/bin/env bash
# What the health checks of the six idle backends cost: CPU time of their
# containers (cgroup v1 cpuacct.usage, health checks' exec included) over
# SECONDS_MEASURED, for no check, the bash /healthz check and echo-probe, each
# every INTERVAL. Needs the engine (eval "$(ci/docker/dockerd.sh start)") and
# cgroup v1; brings the default stack up and leaves it up.
#
#   ci/docker/healthcheck-cost.sh [INTERVAL] [SECONDS_MEASURED]   # default: 5s 30
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
interval=${1:-5s}
seconds=${2:-30}
overrides=$(mktemp -d)
trap 'rm -rf "$overrides"' EXIT

override() {  # $1: file name, $2: the healthcheck mapping
    {
        echo "x-check: &check"
        echo "  healthcheck: $2"
        echo "services:"
        for service in thread threadpool fork gevent asyncio uvloop; do echo "  $service: *check"; done
    } >"$overrides/$1"
}
override none.yml "{disable: true}"
override bash.yml "{test: [CMD, echo-healthcheck], interval: $interval, start_period: 20s}"
override probe.yml "{test: [CMD, echo-probe, --timeout, '2'], interval: $interval, start_period: 20s}"

cpu_ms() {
    local total=0 id
    for id in $(docker compose ps -q); do
        total=$((total + $(cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage")))
    done
    echo $((total / 1000000))
}

for check in none bash probe bash probe; do
    docker compose -f docker-compose.yml -f "$overrides/$check.yml" up -d >/dev/null 2>&1
    sleep 3
    before=$(cpu_ms)
    sleep "$seconds"
    used=$(($(cpu_ms) - before))
    awk -v c="$check" -v i="$interval" -v u="$used" -v s="$seconds" \
        'BEGIN { printf "%-5s every %s: %5d ms CPU in %d s for six idle containers (%.1f%% of a core)\n", c, i, u, s, u / s / 10 }'
done
docker compose up -d --wait >/dev/null 2>&1
