#!/usr/bin/env bash
# Checks of the Docker files that need no engine:
#   docker compose config -q   for the default stack and every profile
#   check-jsonschema           docker-compose.yml against the compose-spec schema
#   hadolint                   the Dockerfile
#   haproxy -c                 the load balancer's configuration
#   kubernetes-validate        deploy/kubernetes.yaml against three API versions
#   sh -n, bash -n             the bench script and the health check
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
eval "$("$REPO_ROOT/ci/docker/dockerd.sh" plugin)"
# Tools installed by pip live beside the interpreter that installed them.
PATH=$(dirname "$(command -v "${PYTHON:-python3}")"):$PATH:/usr/sbin:/sbin

run() { log "$*"; "$@"; }

run docker compose config -q
for profile in bench scaled '*'; do
    run docker compose --profile "$profile" config -q
done
run check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
run hadolint Dockerfile
run haproxy -c -q -f deploy/haproxy.cfg
for version in 1.27.0 1.30.0 1.37.0; do
    run kubernetes-validate --strict --quiet -k "$version" deploy/kubernetes.yaml
done
run sh -n deploy/bench.sh
run bash -n deploy/healthcheck.sh
log "static checks passed"
