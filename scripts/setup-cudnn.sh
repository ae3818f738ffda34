#!/usr/bin/env bash
# Installs cuDNN 9 for the CUDA addon from its pip wheel, where the build looks for it
# (`python3 -c 'import nvidia.cudnn'`). Idempotent and quick when already installed; does
# nothing without a CUDA toolkit, since the addon is then skipped anyway. Override the version
# with CUDNN_WHEEL=nvidia-cudnn-cu12==9.x for a CUDA 12 toolkit.
set -euo pipefail

wheel="${CUDNN_WHEEL:-nvidia-cudnn-cu13==9.24.0.43}"
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup-cudnn: no CUDA toolkit (nvcc) here; the CUDA addon will be skipped, so cuDNN is not installed"
  exit 0
fi
if [ -n "${CUDNN_ROOT:-}" ]; then
  echo "setup-cudnn: CUDNN_ROOT=${CUDNN_ROOT} is set; the build uses it"
  exit 0
fi
# The cu13 wheel's libraries need a CUDA 13 driver (580+); beside a CUDA 12 toolkit the addon
# would build but cuDNN would not start on an older driver.
nvcc_bin="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
cuda_major="$("$nvcc_bin" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9]*\)\..*/\1/p' | head -1)"
if [ -z "${CUDNN_WHEEL:-}" ] && [ -n "$cuda_major" ] && [ "$cuda_major" != 13 ]; then
  echo "setup-cudnn: warning: nvcc is CUDA $cuda_major but $wheel is for CUDA 13; set CUDNN_WHEEL=nvidia-cudnn-cu$cuda_major==9.x to match" >&2
fi
want="${wheel##*==}"
have="$(python3 -c 'import importlib.metadata as m; print(m.version("'"${wheel%%==*}"'"))' 2>/dev/null || true)"
if [ "$have" = "$want" ]; then
  echo "setup-cudnn: ${wheel%%==*} $have already installed"
  exit 0
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$wheel"
python3 -c 'import nvidia.cudnn as m; print("setup-cudnn: cuDNN wheel in", list(m.__path__)[0])'
