#!/usr/bin/env bash
# Installs the system packages cudnn-resnet builds against on Debian/Ubuntu: oneDNN
# (libdnnl-dev), Gloo for distributed training (libgloo-dev, which Depends on libhiredis-dev and
# libibverbs-dev), CMake and a C++ compiler, and the Fashion-MNIST data set the quick start trains
# on (dataset-fashion-mnist). Installs only what is missing, without Recommends. Run as root or
# with sudo.
#
#   --list   prints the packages, one a line, and installs nothing
#
# Every file the native build reads from outside the checkout must come from these packages,
# from what they Depend on, or from the base machine (node, npm, python3, g++, make):
# scripts/check-host-deps.ts checks that after the CI build (docs/building.md).
set -euo pipefail

packages=(libdnnl-dev libgloo-dev cmake g++ make dataset-fashion-mnist)
if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

missing=()
for package in "${packages[@]}"; do
  [[ $(dpkg-query -W -f '${db:Status-Abbrev}' "$package" 2>/dev/null) == ii* ]] || missing+=("$package")
done

if ((${#missing[@]} == 0)); then
  echo "setup-debian: ${packages[*]} are installed"
else
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup-debian: run as root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "setup-debian: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Ubuntu 22.04's libdnnl-dev is oneDNN 2.2, older than the 2.6 the CPU addon needs: say so now,
# not only when the build stops.
dnnl=$(dpkg-query -W -f '${Version}' libdnnl-dev)
if [[ -z ${DNNL_ROOT:-} ]] && dpkg --compare-versions "$dnnl" lt 2.6; then
  echo "setup-debian: this system's libdnnl-dev is oneDNN $dnnl; cudnn-resnet needs 2.6 to 3.x." >&2
  echo "  Build one (an hour or more on 2 cores): bash scripts/build-onednn.sh --prefix \$HOME/onednn-3" >&2
  echo "  then: export DNNL_ROOT=\$HOME/onednn-3 (docs/building.md, \"Another oneDNN\")" >&2
  exit 1
fi
