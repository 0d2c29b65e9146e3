# Shared settings for the private Docker engine used by CI and the docker tests.
# Source it; every path lives under the clone (or ECHOSERVER_DOCKER_STATE).

_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$_lib_dir/../.." && pwd)

STATE_DIR=${ECHOSERVER_DOCKER_STATE:-$REPO_ROOT/.docker-ci}
DATA_ROOT=$STATE_DIR/data
# exec-root holds unix sockets (108-byte limit), so it gets a short path of its own.
EXEC_ROOT=/tmp/echoserver-docker-$(printf %s "$STATE_DIR" | cksum | cut -d" " -f1)
PID_FILE=$STATE_DIR/dockerd.pid
DOCKERD_LOG=$STATE_DIR/dockerd.log
ROOTFS_DIR=$STATE_DIR/rootfs

# Address ranges unlikely to clash with anything else on the machine.
ADDRESS_POOL=${ECHOSERVER_DOCKER_POOL:-10.213.0.0/16}

# Names the Dockerfile and docker-compose.yml ask for.
PYTHON_BASE_TAG=${PYTHON_BASE_TAG:-python:3.12-slim}
HAPROXY_TAG=${HAPROXY_TAG:-haproxy:2.8}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}

export DOCKER_HOST=unix://$EXEC_ROOT/docker.sock
export DOCKER_CONFIG=$STATE_DIR/config

log() { printf '[docker-ci] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
