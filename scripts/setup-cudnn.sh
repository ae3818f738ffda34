#!/usr/bin/env bash
# Installs cuDNN 9 for the CUDA addon, and NCCL for its collectives (distributed training), from
# their pip wheels, where the build looks for them (`python3 -c 'import nvidia.cudnn'`,
# `import nvidia.nccl`). Idempotent and quick when already installed; does nothing without a
# CUDA toolkit, since the addon is then skipped anyway. Override the versions with
# CUDNN_WHEEL=nvidia-cudnn-cu12==9.x and NCCL_WHEEL=nvidia-nccl-cu12==2.x for a CUDA 12 toolkit;
# CUDNN_ROOT or NCCL_ROOT, when set, replace the wheel.
set -euo pipefail

wheel="${CUDNN_WHEEL:-nvidia-cudnn-cu13==9.24.0.43}"
nccl_wheel="${NCCL_WHEEL:-nvidia-nccl-cu13==2.30.7}"
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup-cudnn: no CUDA toolkit (nvcc) here; the CUDA addon will be skipped, so cuDNN is not installed"
  exit 0
fi
# The cu13 wheels' libraries need a CUDA 13 driver (580+); beside a CUDA 12 toolkit the addon
# would build but cuDNN would not start on an older driver.
nvcc_bin="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
cuda_major="$("$nvcc_bin" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9]*\)\..*/\1/p' | head -1)"
if [ -z "${CUDNN_WHEEL:-}" ] && [ -n "$cuda_major" ] && [ "$cuda_major" != 13 ]; then
  echo "setup-cudnn: warning: nvcc is CUDA $cuda_major but $wheel and $nccl_wheel are for CUDA 13; set CUDNN_WHEEL=nvidia-cudnn-cu$cuda_major==9.x and NCCL_WHEEL=nvidia-nccl-cu$cuda_major==2.x to match" >&2
fi

# install_wheel SPEC MODULE: pip-installs SPEC unless that version is there.
install_wheel() {
  local spec="$1" module="$2" have
  have="$(python3 -c 'import importlib.metadata as m; print(m.version("'"${spec%%==*}"'"))' 2>/dev/null || true)"
  if [ "$have" = "${spec##*==}" ]; then
    echo "setup-cudnn: ${spec%%==*} $have already installed"
    return
  fi
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$spec"
  python3 -c 'import '"$module"' as m; print("setup-cudnn: '"${spec%%==*}"' in", list(m.__path__)[0])'
}

if [ -n "${CUDNN_ROOT:-}" ]; then
  echo "setup-cudnn: CUDNN_ROOT=${CUDNN_ROOT} is set; the build uses it"
else
  install_wheel "$wheel" nvidia.cudnn
fi
if [ -n "${NCCL_ROOT:-}" ]; then
  echo "setup-cudnn: NCCL_ROOT=${NCCL_ROOT} is set; the build uses it"
else
  install_wheel "$nccl_wheel" nvidia.nccl
fi
