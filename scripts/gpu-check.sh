#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, in one call of at most ~8 minutes: the conformance
# tests on cuda (vitest, from the node_modules that scripts/prepare-gpu-check.sh packed), then
# training throughput of ResNet-20 and ResNet-50 next to PyTorch on the same GPU, TF32 on and
# off, printed as one table. Needs: an NVIDIA driver and GPU, python3 with nvidia.cudnn (and
# torch for the comparison), and .node-bin/ from prepare-gpu-check.sh.
#
#   scripts/gpu-check.sh [--tests-only | --bench-only] [--reps N]
# Results go to $OUT (when set) as tests.txt, ours.json, torch.json.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
tests=1 bench=1 reps=10
while [ $# -gt 0 ]; do
  case "$1" in
    --tests-only) bench=0 ;;
    --bench-only) tests=0 ;;
    --reps) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "gpu-check: --reps needs a positive integer" >&2; exit 64; }; reps=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1'" >&2; usage >&2; exit 64 ;;
  esac
  shift
done
out="${OUT:-$(mktemp -d)}"

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: no nvidia-smi here: this machine has no NVIDIA driver, so there is nothing to check (run it on a GPU machine)" >&2
  exit 2
fi
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; then
  echo "gpu-check: nvidia-smi failed: the NVIDIA driver is not usable here" >&2
  exit 2
fi
[ -f .node-bin/node.xz ] || { echo "gpu-check: .node-bin/node.xz missing: run scripts/prepare-gpu-check.sh first and carry .node-bin" >&2; exit 3; }
[ -f build/Release/cudnn_resnet_cuda.node ] || { echo "gpu-check: build/Release/cudnn_resnet_cuda.node missing: carry build" >&2; exit 3; }

bin="$(mktemp -d)"
xz -dc .node-bin/node.xz > "$bin/node" && chmod +x "$bin/node"
export PATH="$bin:$PATH"
if [ ! -d node_modules ] || [ -L node_modules ]; then
  rm -f node_modules
  xz -dc .node-bin/node_modules.tar.xz | tar -xf -
fi
cudnn="$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)" || cudnn=""
[ -n "$cudnn" ] && export LD_LIBRARY_PATH="$cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
node -e "import('./dist/index.js').then(m => console.log(JSON.stringify(m.backends().find(b => b.name === 'cuda'), null, 1)))"

status=0
if [ $tests = 1 ]; then
  timeout 240 node node_modules/vitest/vitest.mjs run test/ops.test.ts test/cuda.test.ts test/errors.test.ts test/gradcheck.test.ts \
    2>&1 | tee "$out/tests.txt" | grep -E '✓|×|FAIL|skip|Test Files|Tests ' | tail -60
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if [ $bench = 1 ]; then
  timeout 150 node --import tsx bench/gpu.ts --reps "$reps" --json "$out/ours.json" || status=1
  timeout 120 python3 bench/gpu_torch.py --reps "$reps" --json "$out/torch.json" || status=1
  node -e '
    const fs = require("fs");
    const read = (f) => { try { return JSON.parse(fs.readFileSync(f, "utf8")); } catch { return { rows: [] }; } };
    const ours = read(process.argv[1]), torch = read(process.argv[2]);
    console.log(`\n${ours.device ?? torch.device ?? "GPU"}: training img/s, float32 NCHW`);
    console.log("model      batch  tf32   cudnn-resnet   pytorch   ratio");
    for (const r of ours.rows) {
      const t = torch.rows.find((x) => x.model === r.model && x.tf32 === r.tf32);
      const ratio = t ? (r.imgPerSec / t.imgPerSec).toFixed(2) : "-";
      console.log(`${r.model.padEnd(10)} ${String(r.batch).padStart(5)}  ${(r.tf32 ? "on" : "off").padEnd(5)} ${r.imgPerSec.toFixed(1).padStart(13)} ${(t ? t.imgPerSec.toFixed(1) : "-").padStart(9)} ${ratio.padStart(7)}`);
    }' "$out/ours.json" "$out/torch.json"
fi
exit $status
