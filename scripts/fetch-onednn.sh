#!/usr/bin/env bash
# Downloads a Debian release's oneDNN (libdnnl-dev and the library package it depends on; by
# default Debian 13's oneDNN 3.x) and unpacks it into a folder, without installing anything: a
# prefix that DNNL_ROOT can point at, so that CI compiles and links the CPU addon against
# oneDNN 3.x on a Debian 12 machine (scripts/check-onednn3.sh). The system's apt sources and state are untouched
# (scripts/private-apt.sh); the packages come from the mirror the system's own sources name.
#
# Usage: scripts/fetch-onednn.sh [--suite trixie] [--dir .cache/onednn-trixie]
# Prints the prefix (DIR/root/usr) on its last line. Quick when DIR already holds the packages.
#
# Debian 13's library needs glibc 2.38 and libstdc++ from GCC 14, so on Debian 12 an addon
# linked against it does not load; see docs/building.md, "oneDNN 3.x".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/private-apt.sh"

suite=trixie
dir=""
while (($#)); do
  case "$1" in
    --suite) suite="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) echo "usage: scripts/fetch-onednn.sh [--suite trixie] [--dir DIR]" >&2; exit 2 ;;
  esac
done
dir="${dir:-$here/../.cache/onednn-$suite}"
mkdir -p "$dir/debs"
dir="$(cd "$dir" && pwd)"

if ! compgen -G "$dir/debs/libdnnl-dev_*.deb" >/dev/null; then
  private_apt "$dir/apt" "$suite"
  # The library package is named for its SONAME (libdnnl3.6 in Debian 13): read it from
  # libdnnl-dev's Depends rather than guess it.
  lib=$(apt-cache "${PRIVATE_APT[@]}" show libdnnl-dev | sed -n 's/^Depends: //p' | head -1 | tr ',' '\n' |
    sed -n 's/^ *\(libdnnl[0-9][^ ]*\).*/\1/p' | head -1)
  [[ -n $lib ]] || { echo "fetch-onednn: $suite's libdnnl-dev names no libdnnl library package" >&2; exit 1; }
  rm -f "$dir"/debs/*.deb
  (cd "$dir/debs" && apt-get "${PRIVATE_APT[@]}" -qq download libdnnl-dev "$lib")
fi
rm -rf "$dir/root"
for deb in "$dir"/debs/*.deb; do
  dpkg-deb -x "$deb" "$dir/root"
  echo "fetch-onednn: unpacked $(basename "$deb")"
done
echo "$dir/root/usr"
