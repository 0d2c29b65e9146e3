# The Debian mirror this machine's own apt configuration uses. Source this file;
# it defines one function and changes nothing else.
#
# Why a function of its own: scripts here that fetch from Debian (debootstrap for
# the Docker stand-in images, apt's source download for the free-threaded CPython)
# must use the mirror the machine already trusts and reaches, and the repository
# must not name one. Reading it from /etc/apt in one place keeps both honest.

# debian_mirror: print the first enabled Debian archive URI (one ending in /debian,
# not debian-security) found in /etc/apt/sources.list, sources.list.d/*.list
# (one-line format, options in [...] allowed) and sources.list.d/*.sources (deb822,
# stanzas with "Enabled: no" skipped). DEBIAN_MIRROR overrides. Returns 1 with
# nothing printed when there is none.
debian_mirror() {
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then
        printf '%s\n' "${DEBIAN_MIRROR%/}"
        return 0
    fi
    local etc=${DEBIAN_MIRROR_APT_ETC:-/etc/apt} f uris=()
    for f in "$etc/sources.list" "$etc"/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        # deb [arch=amd64 signed-by=...] URI suite components
        mapfile -t -O "${#uris[@]}" uris < <(sed -E -n \
            -e 's/^[[:space:]]*deb(-src)?[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\3/p' "$f")
    done
    for f in "$etc"/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        # deb822: blank lines separate stanzas; a stanza may say "Enabled: no".
        mapfile -t -O "${#uris[@]}" uris < <(awk '
            function flush() { if (enabled) for (i = 1; i <= n; i++) print u[i]; n = 0; enabled = 1 }
            BEGIN { enabled = 1 }
            /^[[:space:]]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "enabled:" && tolower($2) == "no" { enabled = 0 }
            tolower($1) == "uris:" { for (i = 2; i <= NF; i++) u[++n] = $i }
            END { flush() }' "$f")
    done
    local uri
    for uri in "${uris[@]}"; do
        uri=${uri%/}
        if [[ $uri =~ ^https?://[^/]+(/.*)?/debian$ ]]; then
            printf '%s\n' "$uri"
            return 0
        fi
    done
    return 1
}
