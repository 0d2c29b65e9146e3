#!/usr/bin/env bash
# A virtual environment of this checkout on free-threaded CPython, ready to serve and
# test: prints its python's path as the last line of stdout (logs on stderr).
#
#   tools/python/venv.sh              # .venv-ft, on the interpreter tools/python/build.sh gives
#   tools/python/venv.sh DIR          # elsewhere
#   ECHOSERVER_FT_PYTHON=/usr/bin/python3.14t tools/python/venv.sh   # any free-threaded Python
#
# It installs the extras that install there ('.[freethreading,test-freethreading]'), and
# byte-compiles the checkout every time it runs. Why the byte-compiling: on 3.13t, a module
# imported from source (no .pyc, e.g. under PYTHONDONTWRITEBYTECODE=1) keeps mortal
# constants, and CPU-bound code in it does not run in parallel (docs/free-threading.md).
# After editing the source, run it again (or `python -m compileall echoserver clients`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
log() { printf '[ft-venv] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

(($# <= 1)) || { log "usage: tools/python/venv.sh [DIR]"; exit 2; }
venv=${1:-$repo/.venv-ft}
python=${ECHOSERVER_FT_PYTHON:-}
if [[ -z $python ]]; then
    python=$("$here/build.sh" | tail -n1) || die "tools/python/build.sh failed"
fi
"$python" -c 'import sys; sys.exit(sys._is_gil_enabled())' 2>/dev/null \
    || die "$python is not a free-threaded Python with the GIL off"

# Recreate the environment when it belongs to another interpreter.
want=$("$python" -c 'import sys; print(sys.version)')
if [[ -x $venv/bin/python && $("$venv/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null) != "$want" ]]; then
    log "$venv was made by another interpreter; recreating it"
    rm -rf "$venv"
fi
[[ -x $venv/bin/python ]] || { log "creating $venv"; "$python" -m venv "$venv"; }

# Install when pyproject.toml changed since the last install here (or there was none).
stamp=$venv/.echoserver-pyproject
if ! cmp -s "$repo/pyproject.toml" "$stamp"; then
    log "pip install -e '.[freethreading,test-freethreading]' (minutes the first time: uvloop compiles)"
    (cd "$repo" && "$venv/bin/python" -m pip install -q -e '.[freethreading,test-freethreading]') >&2 \
        || die "pip install into $venv failed"
    cp "$repo/pyproject.toml" "$stamp"
fi

"$venv/bin/python" -m compileall -q "$repo/echoserver" "$repo/clients" >&2 \
    || die "byte-compiling the checkout failed"

# The server's side must keep the GIL off (the clients import hdrhistogram's C extension,
# which turns it on; they do not need to run here).
"$venv/bin/python" -c '
import importlib, pkgutil, sys
import echoserver
for m in pkgutil.walk_packages(echoserver.__path__, "echoserver."):
    if not m.name.endswith("__main__") and not m.name.endswith(".gevent"):
        importlib.import_module(m.name)
    if sys._is_gil_enabled():
        sys.exit(f"importing {m.name} enabled the GIL")
' || die "the GIL is on after importing echoserver in $venv"
log "ready: $("$venv/bin/python" -VV | head -n1)"
printf '%s\n' "$venv/bin/python"
