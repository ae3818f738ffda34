#!/usr/bin/env bash
# Installs the system packages cudnn-resnet builds against on Debian/Ubuntu: oneDNN
# (libdnnl-dev), Gloo for distributed training (libgloo-dev, which Depends on libhiredis-dev and
# libibverbs-dev), CMake and a C++ compiler, and the Fashion-MNIST data set the quick start trains
# on (dataset-fashion-mnist). Installs only what is missing. Run as root or with sudo.
set -euo pipefail

missing=()
dpkg -s libdnnl-dev >/dev/null 2>&1 || missing+=(libdnnl-dev)
dpkg -s libgloo-dev >/dev/null 2>&1 || missing+=(libgloo-dev)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || missing+=(dataset-fashion-mnist)

if ((${#missing[@]} == 0)); then
  echo "setup-debian: libdnnl-dev, libgloo-dev, cmake, g++, make and dataset-fashion-mnist are installed"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup-debian: run as root to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "setup-debian: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
