#!/usr/bin/env bash
# Prepares this working tree for scripts/gpu-check.sh on a lent GPU machine, which has no
# network and no Node.js: builds the addons here (the built build/Release/*.node travel with the
# tree), and puts into the git-ignored .node-bin/ this machine's node binary and the
# node_modules the tests need (vitest, tsx), xz-compressed to fit the 64 MiB the tree may carry.
# Carry `.node-bin` and `build` (and `dist`) when running gpu-check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."

npx cmake-js compile --log-level warn
npm run build:ts >/dev/null
[ -f build/Release/cudnn_resnet_cuda.node ] || { echo "prepare-gpu-check: the CUDA addon was not built (see the configure message above)" >&2; exit 1; }
mkdir -p .node-bin
xz -T0 -6 -c "$(command -v node)" > .node-bin/node.xz
# TypeScript and TypeDoc are build tools; the tests run through vitest's own transform.
tar -C . --dereference --exclude='node_modules/typescript' --exclude='node_modules/typedoc' \
  --exclude='node_modules/.cache' -cf - node_modules | xz -T0 -6 > .node-bin/node_modules.tar.xz
du -ch .node-bin/* build/Release/*.node | tail -1 | sed 's/^/prepare-gpu-check: carried size /'
