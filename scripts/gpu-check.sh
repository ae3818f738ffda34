#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, in one call of at most ~7.5 minutes (the sum of
# the timeouts below): the conformance tests on cuda (vitest, from the node_modules that
# scripts/prepare-gpu-check.sh packed), then training throughput of ResNet-20 and ResNet-50 next
# to PyTorch on the same GPU, TF32 on and off, printed as one table. Needs: an NVIDIA driver and
# GPU, python3 with nvidia.cudnn (and torch for the comparison), and the carried .node-bin,
# build/Release and dist from prepare-gpu-check.sh. No network, no Node.js installed.
#
#   scripts/gpu-check.sh [--tests-only | --bench-only] [--reps N]
# Results go to $OUT (when set) as tests.txt, ours.json, torch.json.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
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
[ -f .node-bin/node.xz ] && [ -f .node-bin/node_modules.tar.xz ] || { echo "gpu-check: .node-bin/ incomplete: run scripts/prepare-gpu-check.sh first and carry .node-bin" >&2; exit 3; }
[ -f build/Release/cudnn_resnet_cuda.node ] || { echo "gpu-check: build/Release/cudnn_resnet_cuda.node missing: carry build/Release" >&2; exit 3; }
[ -f dist/index.js ] || { echo "gpu-check: dist/index.js missing: carry dist" >&2; exit 3; }

# xz, or Python's lzma where the xz tool is not installed.
unxz_to_stdout() {
  if command -v xz >/dev/null 2>&1; then xz -dc "$1"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}
bin="$(mktemp -d)"
unxz_to_stdout .node-bin/node.xz > "$bin/node" && chmod +x "$bin/node" || { echo "gpu-check: could not unpack node" >&2; exit 3; }
export PATH="$bin:$PATH"
if [ ! -d node_modules ] || [ -L node_modules ]; then
  rm -f node_modules
  unxz_to_stdout .node-bin/node_modules.tar.xz | tar -xf - || { echo "gpu-check: could not unpack node_modules" >&2; exit 3; }
fi
# The addon's RUNPATH names the build machine's cuDNN folder; here cuDNN comes from python3's
# nvidia-cudnn wheel (the one PyTorch uses), whose lib/ holds libcudnn.so.9 and its parts.
cudnn="$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)" || cudnn=""
if [ -n "$cudnn" ] && [ -f "$cudnn/lib/libcudnn.so.9" ]; then
  export LD_LIBRARY_PATH="$cudnn/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  echo "gpu-check: python3 has no nvidia.cudnn wheel with lib/libcudnn.so.9; relying on the loader's default paths" >&2
fi
node --version
# Without a usable cuda backend every cuda test would be skipped and the run would look green.
node -e "import('./dist/index.js').then((m) => {
  const cuda = m.backends().find((b) => b.name === 'cuda');
  console.log(JSON.stringify(cuda, null, 1));
  if (!cuda.available) { console.error('gpu-check: the cuda backend is unavailable here: ' + cuda.reason); process.exit(4); }
})" || exit 4

status=0
if [ $tests = 1 ]; then
  timeout 150 node node_modules/vitest/vitest.mjs run test/ops.test.ts test/cuda.test.ts test/errors.test.ts test/gradcheck.test.ts \
    2>&1 | tee "$out/tests.txt" | grep -E '✓|×|FAIL|skip|Test Files|Tests ' | tail -60
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
if [ $bench = 1 ]; then
  timeout 150 node --import tsx bench/gpu.ts --reps "$reps" --json "$out/ours.json" || status=1
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/gpu_torch.py --reps "$reps" --json "$out/torch.json" || status=1
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
