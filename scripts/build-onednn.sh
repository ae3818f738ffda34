#!/usr/bin/env bash
# Builds oneDNN from a Debian release's source package into a prefix of its own, for building
# cudnn-resnet against a oneDNN that the machine's apt does not offer (DNNL_ROOT=<prefix>):
# Debian 13's oneDNN 3.7 on a Debian 12 machine, whose glibc is too old for Debian 13's binary.
# A developer tool, not run by CI or by the set-up script (docs/building.md, "oneDNN 3.x").
#
# Usage: scripts/build-onednn.sh [--suite trixie] [--prefix /opt/onednn-3] [--work DIR] [--jobs 2]
#   --suite   the Debian release whose `onednn` source package is built (default trixie)
#   --prefix  where it is installed (default /opt/onednn-3); then build with DNNL_ROOT=<prefix>
#   --work    the source and build folder (default <prefix>-src); kept for a rebuild
#   --jobs    parallel compile jobs (default 2; 146 minutes here under nice 19 on 2 busy cores)
# Needs cmake, g++ and make (what scripts/setup-debian.sh installs) and dpkg-dev (`apt-get
# source` unpacks with dpkg-source). The system's apt sources are untouched (scripts/private-apt.sh).
#
# The build is what Debian's package builds, less what cudnn-resnet never uses: the CPU engine with
# the OpenMP runtime (what the addon requires), no GPU runtime, no graph API, tests, examples or
# documentation; Debian's patches applied (its SONAME, libdnnl.so.3.6, so that an addon built
# against this prefix also loads Debian 13's library), except the one that makes the system's
# spdlog a requirement: spdlog serves oneDNN's experimental logging only, which is off here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/private-apt.sh"

suite=trixie
prefix=/opt/onednn-3
work=""
jobs=2
while (($#)); do
  case "$1" in
    --suite) suite="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    *) echo "usage: scripts/build-onednn.sh [--suite trixie] [--prefix DIR] [--work DIR] [--jobs N]" >&2; exit 2 ;;
  esac
done
work="${work:-$prefix-src}"
for tool in cmake g++ make dpkg-source; do
  command -v "$tool" >/dev/null || { echo "build-onednn: $tool is missing (cmake, g++ and make: scripts/setup-debian.sh; dpkg-source: apt-get install dpkg-dev)" >&2; exit 1; }
done

start=$SECONDS
mkdir -p "$work"
work="$(cd "$work" && pwd)"
private_apt "$work/apt" "$suite" deb-src
version=$(apt-cache "${PRIVATE_APT[@]}" showsrc onednn | sed -n 's/^Version: //p' | head -1)
[[ -n $version ]] || { echo "build-onednn: $suite has no onednn source package" >&2; exit 1; }
upstream="${version#*:}"
upstream="${upstream%-*}"
src="$work/onednn-$upstream"
if [[ ! -d $src ]]; then
  echo "build-onednn: fetching onednn $version ($suite)"
  (cd "$work" && apt-get "${PRIVATE_APT[@]}" -qq source onednn)
  if [[ -f $src/debian/patches/system-spdlog.patch ]]; then
    patch -d "$src" -p1 -R --quiet <"$src/debian/patches/system-spdlog.patch"
  fi
fi

# ONEDNN_ARCH_OPT_FLAGS="" as Debian: the JIT picks the machine's instructions at run time, so
# the compiled C++ stays baseline x86-64.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_CXX_STANDARD=17 \
  -DDNNL_CPU_RUNTIME=OMP -DDNNL_GPU_RUNTIME=NONE -DONEDNN_BUILD_GRAPH=OFF \
  -DDNNL_BUILD_TESTS=OFF -DDNNL_BUILD_EXAMPLES=OFF -DDNNL_BUILD_DOC=OFF \
  -DDNNL_EXPERIMENTAL_SPARSE=ON -DDNNL_EXPERIMENTAL_UKERNEL=ON -DONEDNN_ARCH_OPT_FLAGS="" \
  -DCMAKE_MESSAGE_LOG_LEVEL=WARNING
cmake --build "$work/build" -j "$jobs"
cmake --install "$work/build" >/dev/null
echo "build-onednn: oneDNN $upstream installed in $prefix in $(((SECONDS - start) / 60)) min;" \
  "build cudnn-resnet against it with DNNL_ROOT=$prefix npm run build:native"
