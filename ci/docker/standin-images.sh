#!/usr/bin/env bash
# Build stand-ins for the registry images the project uses, for an engine that
# cannot pull: a Debian rootfs from debootstrap (python3, pip, venv, haproxy,
# CA certificates), imported twice:
#   python:3.12-slim  (what the Dockerfile's FROM asks for; Debian's python3)
#   haproxy:2.8       (what the scaled profile's load balancer runs)
# Images already present in the engine are kept. Needs a running engine
# (dockerd.sh start), root and debootstrap.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/tools/lib/debian-mirror.sh"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

if have_image "$PYTHON_BASE_TAG" && have_image "$HAPROXY_TAG"; then
    log "stand-in images present: $PYTHON_BASE_TAG $HAPROXY_TAG"
    exit 0
fi

command -v debootstrap >/dev/null || PATH=$PATH:/usr/sbin:/sbin
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"

build_rootfs() {
    local target=$1 url
    # The mirror this machine's apt already uses; the repository names none.
    url=$(debian_mirror) \
        || die "no Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/ (set DEBIAN_MIRROR=URL)"
    rm -rf "$target.tmp"
    log "debootstrap $DEBIAN_SUITE from $url into $target (a minute or two)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates,haproxy \
        "$DEBIAN_SUITE" "$target.tmp" "$url" >"$STATE_DIR/debootstrap.log" 2>&1 \
        || { tail -n 30 "$STATE_DIR/debootstrap.log" >&2; die "debootstrap failed"; }

    # pip inside image builds must reach the same package index as the host:
    # same CA bundle, same index settings (local file:// indexes are skipped).
    cp /etc/ssl/certs/ca-certificates.crt "$target.tmp/etc/ssl/certs/ca-certificates.crt"
    {
        echo "[global]"
        echo "cert = /etc/ssl/certs/ca-certificates.crt"
        local index
        index=${PIP_INDEX_URL:-$(pip_setting index-url)}
        if [[ -n $index && $index != file:* ]]; then echo "index-url = $index"; fi
        local extra
        extra=$(for u in ${PIP_EXTRA_INDEX_URL:-$(pip_setting extra-index-url)}; do [[ $u == file:* ]] || printf '%s ' "$u"; done)
        if [[ -n $extra ]]; then echo "extra-index-url = $extra"; fi
    } >"$target.tmp/etc/pip.conf"

    # Keep the image small: no apt lists, caches or docs.
    rm -rf "$target.tmp"/var/cache/apt/archives/*.deb "$target.tmp"/var/lib/apt/lists/* \
        "$target.tmp"/usr/share/doc "$target.tmp"/usr/share/man "$target.tmp"/usr/share/locale
    mv "$target.tmp" "$target"
}

pip_setting() {
    "${PYTHON:-python3}" -m pip config get "global.$1" 2>/dev/null || true
}

mkdir -p "$STATE_DIR"
[[ -d $ROOTFS_DIR ]] || build_rootfs "$ROOTFS_DIR"

# `docker import` needs a tar stream of the rootfs; mounts like /proc are not
# part of it because debootstrap unmounts them when it finishes.
import_rootfs() {
    local tag=$1; shift
    log "docker import -> $tag"
    tar -C "$ROOTFS_DIR" --numeric-owner -c . | docker import "$@" - "$tag" >/dev/null
}

have_image "$PYTHON_BASE_TAG" || import_rootfs "$PYTHON_BASE_TAG" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]'

# The official haproxy image reads /usr/local/etc/haproxy/haproxy.cfg and runs as
# user haproxy. (Its STOPSIGNAL, SIGUSR1, is set in docker-compose.yml:
# `docker import` on older engines does not accept STOPSIGNAL.)
have_image "$HAPROXY_TAG" || import_rootfs "$HAPROXY_TAG" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'USER haproxy' \
    --change 'CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'

docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "${PYTHON_BASE_TAG%%:*}" >&2
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "${HAPROXY_TAG%%:*}" >&2
