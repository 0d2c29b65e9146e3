#!/usr/bin/env bash
# Checks of the Docker files that need no engine:
#   docker compose config -q   for the default stack and every profile
#   check-jsonschema           docker-compose.yml against the compose-spec schema
#   hadolint                   the Dockerfile
#   haproxy -c                 the load balancer's configuration
#   sh -n                      the bench script
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
eval "$("$REPO_ROOT/ci/docker/dockerd.sh" plugin)"
# Tools installed by pip live beside the interpreter that installed them.
PATH=$(dirname "$(command -v "${PYTHON:-python3}")"):$PATH:/usr/sbin:/sbin

run() { log "$*"; "$@"; }

for profiles in "" "--profile bench" "--profile scaled" "--profile bench --profile scaled"; do
    # shellcheck disable=SC2086
    run docker compose $profiles config -q
done
run check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
run hadolint Dockerfile
run haproxy -c -q -f deploy/haproxy.cfg
run sh -n deploy/bench.sh
log "static checks passed"
