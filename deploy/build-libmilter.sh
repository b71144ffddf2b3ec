#!/bin/bash
# Builds a static libmilter from Debian's own sendmail source package (apt-get source:
# downloaded from the machine's Debian mirror, checked against the signed Sources index,
# unpacked with Debian's patches), with Debian's compile options except one: no
# _FFR_WORKERS_POOL. `make venv` links pymilter against it.
#
# Why: Debian's libmilter1.0.1 hands every session to a pool of worker threads through a
# controller thread that polls all sessions; each time a session runs out of input (after
# the negotiation, after end-of-message, before QUIT) its worker writes to a pipe, the
# controller wakes, polls, and later signals a worker again. Measured with Postfix in front
# (bench/milter_throughput.py, docs/milter.md): pymilter's own CPU per message fell from
# ~0.6 to ~0.4 ms, mailsift's milter process from ~1.2 to ~0.85 ms, with this build. Without
# the pool libmilter runs one thread per milter connection that reads its commands
# directly, as the libmilter documentation describes.
#
# Then the patches in deploy/libmilter-patches/ are applied (each says what it does and what
# it measured): buffered-io.patch reads whatever the socket holds and sends a step's header
# changes together with its reply, in one write.
#
#   deploy/build-libmilter.sh DEST        -> DEST/lib/libmilter.a, DEST/VERSION
set -euo pipefail

dest=$(realpath -m "${1:?usage: build-libmilter.sh DEST}")
patches=$(cd "$(dirname "$0")/libmilter-patches" && pwd)
# Built already, from the same patches: nothing to do.
stamp=$(cd "$patches" && sha256sum ./*.patch)
if [ -f "$dest/lib/libmilter.a" ] && [ "$(cat "$dest/PATCHES" 2>/dev/null)" = "$stamp" ]; then
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources" "$work/lists/partial" "$work/cache/archives/partial"

# deb-src entries for the Debian suites the machine installs from (deb822 stanzas or one-line
# entries whose address has "debian" in it; other vendors' repositories often publish no
# sources, and a missing Sources index would fail the update). Debian's own address if none.
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; ORS = "\n\n" } tolower($0) ~ /uris:[^\n]*debian/ {
             sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f"
done > "$work/sources/src.sources"
if [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb \(.*debian.*\)/deb-src \1/p' /etc/apt/sources.list > "$work/sources/src.list"
fi
if ! grep -qs . "$work/sources/src.sources" "$work/sources/src.list"; then
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb-src\nURIs: http://deb.debian.org/debian-security\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$codename" "$codename" "$codename" > "$work/sources/src.sources"
fi

apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/sources"
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" -qq update
(cd "$work" && apt-get "${apt_opts[@]}" -qq source sendmail >/dev/null)

src=$(find "$work" -maxdepth 1 -type d -name 'sendmail-*' | head -1)
[ -n "$src" ] || { echo "build-libmilter: no sendmail source unpacked" >&2; exit 1; }
version=$(cd "$work" && ls sendmail_*.dsc | sed 's/^sendmail_\(.*\)\.dsc$/\1/')

for p in "$patches"/*.patch; do
    patch -s -p1 -d "$src" < "$p"
done
cd "$src/libmilter"
cp ../libsm/errstring.c ../libsm/strl.c .  # libmilter's build links these two in from libsm
mkdir -p "$work/inc"
cp ../include/sm/os/sm_os_linux.h "$work/inc/sm_os.h"
objs=()
for f in main engine listener worker handler comm smfi signal sm_gethost monitor errstring strl; do
    gcc -O2 -g -fPIC -pthread -Wno-int-to-pointer-cast -D_REENTRANT -DNOT_SENDMAIL -Dsm_snprintf=snprintf \
        -DSM_CONF_POLL=1 -DNETINET -DNETINET6 \
        -I"$work/inc" -I. -I../include -I../sendmail -c "$f.c" -o "$work/$f.o"
    objs+=("$work/$f.o")
done
if nm "${objs[@]}" 2>/dev/null | grep -q ' T mi_pool_controller_init'; then
    echo "build-libmilter: the worker pool is still compiled in" >&2
    exit 1
fi
mkdir -p "$dest/lib"
ar rcs "$dest/lib/libmilter.a.tmp" "${objs[@]}"
mv "$dest/lib/libmilter.a.tmp" "$dest/lib/libmilter.a"
echo "libmilter from Debian sendmail $version, without _FFR_WORKERS_POOL, with $(cd "$patches" && echo *.patch)" > "$dest/VERSION"
echo "$stamp" > "$dest/PATCHES"
cat "$dest/VERSION"
