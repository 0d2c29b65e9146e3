#!/usr/bin/env bash
# Build a free-threaded CPython (configure --disable-gil) for the free-threading
# benchmarks and tests, and print its path as the last line of stdout.
#
# Why build at all: this Debian release ships CPython 3.11 only and no binary
# package installs a newer or free-threaded one. Debian's *source* packages do
# download, so the newest python3.N (N >= 13) source whose archive the mirror
# actually serves is fetched with apt's source download from a private apt
# configuration (own sources file, lists and cache under the cache directory;
# the machine's apt sources are read for the mirror's address, never changed).
#
# The result lives outside the checkout and is reused: only the first run pays.
#
# Environment:
#   ECHOSERVER_PYTHON_CACHE  where builds live (default ${XDG_CACHE_HOME:-~/.cache}/echoserver/python)
#   ECHOSERVER_PYTHON_MIN    oldest minor version to accept (default 3.13)
#   ECHOSERVER_PYTHON_REFRESH=1  look for a newer source even if a build is cached
#   DEBIAN_MIRROR            mirror to use instead of the one in /etc/apt
# Anyone who already has a free-threaded Python (distribution, uv, deadsnakes)
# does not need this script: everything that uses it takes any interpreter path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib/debian-mirror.sh"

ROOT=${ECHOSERVER_PYTHON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/echoserver/python}
MIN=${ECHOSERVER_PYTHON_MIN:-3.13}
SUITES=${ECHOSERVER_PYTHON_SUITES:-unstable testing experimental}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
BUILD_DEPS=(build-essential pkg-config xz-utils libssl-dev libffi-dev zlib1g-dev libbz2-dev
    liblzma-dev libsqlite3-dev libreadline-dev uuid-dev libgdbm-dev libgdbm-compat-dev
    libncurses-dev libzstd-dev)

log() { printf '[build-python] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $MIN =~ ^3\.[0-9]+$ ]] || die "ECHOSERVER_PYTHON_MIN=$MIN is not of the form 3.N"

# interpreter PREFIX: the one python3.Nt executable an installation holds.
interpreter() {
    local found=("$1"/bin/python3.*t)
    [[ -x ${found[0]} ]] && printf '%s\n' "${found[0]}"
}

# verify PYTHON: free-threaded, GIL off by default and back on with -X gil=1,
# and the standard library's C extensions that the project and pip rely on.
verify() {
    "$1" -X gil=0 -c '
import sys, sysconfig
import ssl, sqlite3, zlib, bz2, lzma, ctypes, hashlib, uuid, readline, _ssl
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1, "not a --disable-gil build"
assert not sys._is_gil_enabled(), "GIL enabled"
' && [[ $("$1" -X gil=1 -c 'import sys; print(sys._is_gil_enabled())') == True ]]
}

# cached: print the newest complete, verified build already in ROOT.
cached() {
    local prefix py
    for prefix in $(ls -d "$ROOT"/*t 2>/dev/null | sort -V -r); do
        [[ -f $prefix/.complete ]] || continue
        py=$(interpreter "$prefix") || continue
        if verify "$py" 2>/dev/null; then
            printf '%s\n' "$py"
            return 0
        fi
        log "cached build $prefix fails verification; ignoring it"
    done
    return 1
}

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9 # one build at a time; a second caller waits, then reuses it

if [[ ${ECHOSERVER_PYTHON_REFRESH:-0} != 1 ]] && py=$(cached); then
    log "reusing $py ($("$py" -VV | head -n1))"
    printf '%s\n' "$py"
    exit 0
fi

start=$SECONDS

# --- Build dependencies, from Debian's packages ------------------------------
missing=()
for pkg in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    ((EUID == 0)) || die "build dependencies missing: ${missing[*]} (run as root, or: apt-get install ${missing[*]})"
    log "installing build dependencies: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
fi

# --- A private apt configuration for Debian's source packages ----------------
mirror=$(debian_mirror) \
    || die "no Debian mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/ (set DEBIAN_MIRROR=URL)"
[[ -f $KEYRING ]] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
apt_dir=$ROOT/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$ROOT/src"
for suite in $SUITES; do
    printf 'deb-src [signed-by=%s] %s %s main\n' "$KEYRING" "$mirror" "$suite"
done >"$apt_dir/sources.list"
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o APT::Sandbox::User=root
)
log "apt-get update (private: $apt_dir; $SUITES from $mirror)"
apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update of the private source lists failed"

# Every (package, version) of python3.N >= MIN in the source indexes, newest first;
# pre-releases (a '~' in the version) are left out.
candidates() {
    local index
    apt-get "${apt_opts[@]}" indextargets --format '$(FILENAME)' 'Created-By: Sources' \
        | while read -r index; do
            [[ -f $index ]] && /usr/lib/apt/apt-helper cat-file "$index"
        done \
        | awk -v min="${MIN#3.}" '
            /^Package: / { pkg = $2 }
            /^Version: / && pkg ~ /^python3\.[0-9]+$/ {
                split(pkg, p, "."); if (p[2] + 0 >= min + 0 && $2 !~ /~/) print pkg "=" $2 }' \
        | sort -u | sort -t= -k2 -V -r
}

mapfile -t versions < <(candidates)
((${#versions[@]})) || die "no python3.N >= $MIN source package in $SUITES at $mirror"
log "source packages listed, newest first: ${versions[*]}"

orig=
for candidate in "${versions[@]}"; do
    upstream=${candidate#*=}; upstream=${upstream%-*}; upstream=${upstream#*:}
    if [[ -f $ROOT/${upstream}t/.complete ]] && py=$(interpreter "$ROOT/${upstream}t") && verify "$py" 2>/dev/null; then
        log "$candidate, the newest source the mirror serves, is built already: reusing $py"
        printf '%s\n' "$py"
        exit 0
    fi
    existing=("$ROOT/src/${candidate%%=*}_$upstream.orig.tar."*)
    if [[ -f ${existing[0]} ]]; then
        orig=${existing[0]}
        break
    fi
    log "downloading source $candidate"
    # Checksums are verified by apt against the signed index.
    if (cd "$ROOT/src" && apt-get "${apt_opts[@]}" -qq source --download-only "$candidate") >"$ROOT/src/download.log" 2>&1; then
        existing=("$ROOT/src/${candidate%%=*}_$upstream.orig.tar."*)
        orig=${existing[0]}
        break
    fi
    log "  not served: $(grep -m1 -oE '[0-9]{3} +[A-Za-z ]+' "$ROOT/src/download.log" || tail -n1 "$ROOT/src/download.log")"
done
[[ -n $orig && -f $orig ]] || die "none of the listed sources could be downloaded (${versions[*]})"

# --- Configure, build, install -----------------------------------------------
prefix=$ROOT/${upstream}t
work=$(mktemp -d "$ROOT/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
build_log=$ROOT/build-${upstream}t.log
log "building CPython $upstream --disable-gil into $prefix (log: $build_log)"
rm -rf "$prefix"
tar -C "$work" -xf "$orig"
src=("$work"/Python-*)
[[ -d ${src[0]} ]] || die "$orig holds no Python-* directory"
jobs=$(nproc)
if ! (
    cd "${src[0]}"
    ./configure --disable-gil --prefix="$prefix" --with-ensurepip=install
    make -j"$jobs"
    make install
) >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    die "building CPython $upstream failed; full log: $build_log"
fi

py=$(interpreter "$prefix") || die "make install left no python3.*t in $prefix/bin"
verify "$py" || die "$py is not a working free-threaded interpreter (see $build_log)"
elapsed=$((SECONDS - start))
printf 'version=%s\nsource=%s\nseconds=%s\njobs=%s\n' "$upstream" "${orig##*/}" "$elapsed" "$jobs" \
    >"$prefix/.complete"
log "built $("$py" -VV | head -n1) in $((elapsed / 60)) min $((elapsed % 60)) s"
printf '%s\n' "$py"
