#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, in one call of at most 8 minutes (each step's time
# cap leaves the later steps theirs, within 470 s): the carried addon is tried first and rebuilt
# there if it does not load; the conformance and CUDA tests run on cuda (vitest, from the
# node_modules that scripts/prepare-gpu-check.sh packed), with every convolution's cuDNN
# algorithm logged, then the convolution tests once more with TF32 on, then NCCL (a world-size-1
# process group's collectives and one DDP step, scripts/gpu-check-nccl.mjs); then training
# throughput of ResNet-20 and ResNet-50 next to PyTorch on the same GPU, float32 with TF32 on and
# off, then bfloat16 autocast (ours NHWC, PyTorch AMP channels_last), the two libraries' processes
# alternating, printed as one table. Needs: an NVIDIA driver and GPU, python3 with nvidia.cudnn and nvidia.nccl (and
# torch for the comparison), and the carried .node-bin, build/Release and dist from
# prepare-gpu-check.sh. No network, no Node.js installed.
#
#   scripts/gpu-check.sh [--tests-only | --bench-only] [--reps N] [--dry-run]
#
# --dry-run walks every step on any machine without touching a GPU, in seconds (CI runs it): the
# node binary and the packages (carried, or this machine's), the library's load of the CUDA addon
# and of cuDNN, the rebuild command and cmake-js, the test files, the benchmarks' arguments and
# imports, the NCCL check's imports, and the report.
# Results go to $OUT (when set; else a temporary folder): summary.txt, tests.txt, conv-fp32.log,
# conv-tf32.log, nccl.txt, ours.json, torch.json, ours-bf16.json, torch-bf16.json, and rebuild.log
# when the addon was rebuilt.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
tests=1 bench=1 reps=10 dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tests-only) bench=0 ;;
    --bench-only) tests=0 ;;
    --dry-run) dry=1 ;;
    --reps) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "gpu-check: --reps needs a positive integer" >&2; exit 64; }; reps=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1'" >&2; usage >&2; exit 64 ;;
  esac
  shift
done
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
say() { echo "gpu-check: $*" | tee -a "$summary"; }
fail() { say "$1"; exit "${2:-1}"; }
status=0
deadline=$((SECONDS + 470))
# Seconds for a step: at most $1, and no more than leaves the steps after it the $2 they need.
cap() {
  local left=$((deadline - SECONDS - $2))
  if [ "$left" -lt "$1" ]; then echo $((left > 15 ? left : 15)); else echo "$1"; fi
}
# Each step's cap, from what the later steps need at the least: the tests 130 s (the TF32 rerun
# included), the NCCL check 30 s (one process: loading cuDNN and NCCL, a communicator, a ResNet-8
# step), the benchmarks 230 s (float32 160 s, bfloat16 70 s; ours: eager and captured steps).
bench_needs=$((bench ? 230 : 0))
tests_needs=$((tests ? 130 : 0))
nccl_needs=$((tests ? 30 : 0))
rebuild_cap() { cap 200 $((tests_needs + nccl_needs + bench_needs)); }
tests_cap() { cap 240 $((30 + nccl_needs + bench_needs)); }
tf32_cap() { cap 40 $((nccl_needs + bench_needs)); }
nccl_cap() { cap 60 "$bench_needs"; }
ours_cap() { cap 110 120; }
torch_cap() { cap 50 70; }
ours_bf16_cap() { cap 45 25; }
torch_bf16_cap() { cap 25 0; }
say "$( [ $dry = 1 ] && echo 'dry run, ' )results in $out; tree $(git rev-parse --short HEAD 2>/dev/null || echo '(no git)')"

# --- The GPU ------------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null 2>&1 && gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"; then
  say "GPU: $gpu"
elif [ $dry = 1 ]; then
  say "no usable nvidia-smi here: the steps that need the GPU are walked, not run"
else
  fail "no usable NVIDIA driver here (nvidia-smi missing or failing): nothing to check (run it on a GPU machine)" 2
fi

# --- Node.js and the packages -------------------------------------------------------------------
# xz, or Python's lzma where the xz tool is not installed.
unxz_to_stdout() {
  if command -v xz >/dev/null 2>&1; then xz -dc "$1"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi
}
# What the checks run on, and what a rebuild needs (prepare-gpu-check.sh packs exactly these).
needed_packages="vitest tsx cmake-js node-addon-api node-api-headers"
if [ -f .node-bin/node.xz ] && [ -f .node-bin/node_modules.tar.xz ]; then
  bin="$(mktemp -d)"
  trap 'rm -rf "$bin"' EXIT
  unxz_to_stdout .node-bin/node.xz > "$bin/node" && chmod +x "$bin/node" || fail "could not unpack node" 3
  export PATH="$bin:$PATH"
  if [ $dry = 1 ]; then
    listing="$(unxz_to_stdout .node-bin/node_modules.tar.xz | tar -tf -)" || fail "could not list .node-bin/node_modules.tar.xz" 3
    for p in $needed_packages; do
      grep -q "^node_modules/$p/package.json$" <<< "$listing" || fail ".node-bin/node_modules.tar.xz lacks $p: run scripts/prepare-gpu-check.sh again" 3
    done
    say "carried node $(node --version); its packages hold $needed_packages (not unpacked over this machine's node_modules)"
  else
    if [ ! -d node_modules ] || [ -L node_modules ]; then
      rm -f node_modules
      unxz_to_stdout .node-bin/node_modules.tar.xz | tar -xf - || fail "could not unpack node_modules" 3
    fi
    say "node $(node --version), carried"
  fi
elif [ $dry = 1 ] && command -v node >/dev/null 2>&1 && [ -d node_modules ]; then
  say "no .node-bin here (scripts/prepare-gpu-check.sh packs it): using this machine's node $(node --version) and node_modules"
else
  fail ".node-bin/ incomplete: run scripts/prepare-gpu-check.sh first and carry .node-bin" 3
fi
for p in $needed_packages; do [ -f "node_modules/$p/package.json" ] || [ $dry = 1 ] || fail "node_modules/$p missing" 3; done
[ -f dist/index.js ] || fail "dist/index.js missing: carry dist (npm run build:ts)" 3

# --- The CUDA addon: the carried one, else rebuilt here -----------------------------------------
# The library's view of the cuda backend: "available<TAB>reason<TAB>cuDNN loaded<TAB>versions".
probe() {
  node -e "import('./dist/index.js').then((m) => {
    const c = m.backends().find((b) => b.name === 'cuda');
    console.log([c.available, c.reason ?? '', c.details.cudnnLibrary ?? '', JSON.stringify(c.versions)].join('\t'));
  })" 2>&1 | tail -1
}
field() { cut -f"$1" <<< "$entry"; }
entry=''
rebuild_cmd=(node node_modules/cmake-js/bin/cmake-js compile -O build-gpu --CDCR_CPU_ADDON=OFF --CDCMAKE_CUDA_ARCHITECTURES=90 --parallel 16 --log-level warn)
if [ ! -f build/Release/cudnn_resnet_cuda.node ]; then
  [ $dry = 1 ] && say "no build/Release/cudnn_resnet_cuda.node here (no CUDA toolkit?): a GPU run would rebuild with: ${rebuild_cmd[*]}" \
    || fail "build/Release/cudnn_resnet_cuda.node missing: carry build/Release" 3
else
  entry="$(probe)"
  # A binary that cannot load here (another glibc or libstdc++) is rebuilt from the sources in
  # the tree against this machine's nvcc and python3's cuDNN headers, into build-gpu/, and copied
  # over the carried one so that every test loads it.
  if [[ "$(field 2)" == *"failed to load"* ]]; then
    say "the carried addon does not load here: $(field 2)"
    if [ $dry = 1 ]; then
      say "a GPU run would rebuild with: ${rebuild_cmd[*]}"
    else
      say "rebuilding (log: rebuild.log)"
      timeout -k 10 "$(rebuild_cap)" "${rebuild_cmd[@]}" > "$out/rebuild.log" 2>&1 || fail "the rebuild failed: see rebuild.log" 5
      mv build/Release/cudnn_resnet_cuda.node build/Release/cudnn_resnet_cuda.node.carried
      cp build-gpu/Release/cudnn_resnet_cuda.node build/Release/ || fail "the rebuild made no addon" 5
      entry="$(probe)"
      say "addon: rebuilt here"
    fi
  elif [ $dry = 0 ]; then
    say "addon: the carried build/Release/cudnn_resnet_cuda.node"
  fi
  # cuDNN: the library finds it on the loader's path or in python3's nvidia-cudnn wheel (the one
  # PyTorch uses). If that failed, LD_LIBRARY_PATH is the last resort, and the failure is reported.
  if [[ "$(field 2)" == *"libcudnn.so.9 not found"* ]]; then
    say "the library did not find cuDNN by itself: $(field 2)"
    wheel="$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)/lib"
    if [ $dry = 0 ] && [ -f "$wheel/libcudnn.so.9" ]; then
      export LD_LIBRARY_PATH="$wheel${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      entry="$(probe)"
      say "with LD_LIBRARY_PATH=$wheel"
    fi
  fi
  say "cuda: available $(field 1), cuDNN loaded from $(field 3), versions $(field 4)"
  if [ "$(field 1)" != true ]; then
    # Without a usable cuda backend every cuda test would be skipped and the run would look green.
    if [ $dry = 1 ]; then say "cuda unavailable here, as expected without a GPU: $(field 2)"
    else fail "the cuda backend is unavailable here: $(field 2)" 4; fi
  fi
  if [ $dry = 1 ]; then
    version="$(node node_modules/cmake-js/bin/cmake-js --version 2>&1)" || fail "cmake-js does not run: $version" 3
    say "a rebuild, if the carried addon did not load, would run cmake-js $version: ${rebuild_cmd[*]}"
  fi
fi

# --- Tests --------------------------------------------------------------------------------------
# The conformance tests (every op against float64 references, gradients against finite
# differences), the CUDA backend's own, and those whose subject the asynchronous GPU paths touch
# (readbacks, the event loop, training, memory accounting, workers, teardown), and mixed
# precision (half-precision ops against float64, cuDNN's fused batch-norm tails, the autocast
# ResNet-20 step against the CPU's where its addon loads).
# Most important first: a run cut short by its time cap has tested those.
test_files="test/ops.test.ts test/cuda.test.ts test/mixed-precision.test.ts test/batch-norm-tail.test.ts test/errors.test.ts
  test/gradcheck.test.ts test/tensor.test.ts test/event-loop.test.ts
  test/capture.test.ts test/train.test.ts test/leak.test.ts test/memory-limit.test.ts test/worker.test.ts test/teardown.test.ts test/nn.test.ts test/profile.test.ts"
vitest=(node node_modules/vitest/vitest.mjs run --reporter=verbose)
# The lines worth seeing at once; the whole output is in tests.txt.
digest() { grep -aE '×|FAIL|\[skip\]|Test Files|Tests ' | tail -40; }
# "direction algorithm math" of each logged choice, counted.
algorithms() {
  [ -s "$1" ] || { echo "  (no convolution logged)"; return; }
  sed -E 's/^conv2d (forward|backward data|backward filter) .* groups [0-9]+ ([a-z0-9]+) tf32 .*: ([A-Z_0-9]+) \(([^ ]+) math, .*/\1 \2: \3, \4 math/' "$1" |
    sort | uniq -c | sed 's/^/  /'
}
if [ $tests = 1 ]; then
  for f in $test_files; do [ -f "$f" ] || fail "$f missing" 3; done
  if [ $dry = 1 ]; then
    say "a GPU run would test (CUDNN_RESNET_CONV_LOG=conv-fp32.log, then the conv2d tests with CUDNN_RESNET_TF32=1): $(echo $test_files)"
    line='conv2d backward data x [2, 3, 9, 9] w [4, 3, 3, 3] stride [1, 1] padding [1, 1] dilation [1, 1] groups 1 float32 tf32 off: ALGO_1 (FMA math, 0-byte workspace), candidate 1 of 3 by heuristics'
    echo "$line" > "$out/sample-conv.log"
    summed="$(algorithms "$out/sample-conv.log" | sed 's/^ *//')"
    [ "$summed" = "1 backward data float32: ALGO_1, FMA math" ] || fail "the algorithm summary misreads a logged line: $summed" 6
    say "a logged choice is summed up as: $summed"
  else
    say "tests, TF32 off (the float32 tolerance):"
    CUDNN_RESNET_CONV_LOG="$out/conv-fp32.log" timeout -k 10 "$(tests_cap)" "${vitest[@]}" $test_files 2>&1 | tee "$out/tests.txt" | digest
    [ "${PIPESTATUS[0]}" = 0 ] || { status=1; say "tests failed (TF32 off): see tests.txt"; }
    say "cuDNN's choices, TF32 off:"; algorithms "$out/conv-fp32.log" | tee -a "$summary"
    say "convolution tests, TF32 on (test/ops.test.ts's TF32 tolerance):"
    CUDNN_RESNET_TF32=1 CUDNN_RESNET_CONV_LOG="$out/conv-tf32.log" timeout -k 10 "$(tf32_cap)" "${vitest[@]}" test/ops.test.ts -t conv2d 2>&1 | tee -a "$out/tests.txt" | digest
    [ "${PIPESTATUS[0]}" = 0 ] || { status=1; say "convolution tests failed (TF32 on): see tests.txt"; }
    say "cuDNN's choices, TF32 on:"; algorithms "$out/conv-tf32.log" | tee -a "$summary"
  fi
  # NCCL: libnccl.so.2 is opened where the addon's RUNPATH says (the wheel's folder on the machine
  # that built it); else python3's nvidia-nccl wheel here, through LD_LIBRARY_PATH, which the
  # loader reads only when a process starts, hence a second run.
  nccl_wheel="$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)/lib"
  if [ $dry = 1 ]; then
    # Without a GPU the script must stop at its first step, saying cuda is unavailable (status 4):
    # that much proves it parses and imports the library's distributed API.
    if [ "$(field 1)" = true ]; then
      node --check scripts/gpu-check-nccl.mjs || fail "scripts/gpu-check-nccl.mjs does not parse" 6
      say "a GPU run would run scripts/gpu-check-nccl.mjs (it parses; not run: cuda is usable here)"
    elif node scripts/gpu-check-nccl.mjs > "$out/nccl.txt" 2>&1; rc=$?; [ $rc = 4 ]; then say "a GPU run would run scripts/gpu-check-nccl.mjs (it stops here as it should: $(tail -1 "$out/nccl.txt"))"
    else fail "scripts/gpu-check-nccl.mjs failed without a GPU (status $rc, not 4): $(tail -3 "$out/nccl.txt")" 6; fi
  else
    say "NCCL, one rank: collectives and a DDP step (scripts/gpu-check-nccl.mjs):"
    timeout -k 10 "$(nccl_cap)" node scripts/gpu-check-nccl.mjs > "$out/nccl.txt" 2>&1
    rc=$?
    if [ $rc = 5 ] && [ -f "$nccl_wheel/libnccl.so.2" ]; then
      say "NCCL not found by the addon's RUNPATH: again with LD_LIBRARY_PATH=$nccl_wheel"
      LD_LIBRARY_PATH="$nccl_wheel${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout -k 10 "$(nccl_cap)" node scripts/gpu-check-nccl.mjs > "$out/nccl.txt" 2>&1
      rc=$?
    fi
    tee -a "$summary" < "$out/nccl.txt"
    [ $rc = 0 ] || { status=1; say "the NCCL check failed, status $rc: see nccl.txt"; }
  fi
fi

# --- Benchmark ----------------------------------------------------------------------------------
if [ $bench = 1 ]; then
  if [ $dry = 1 ]; then
    for precision in fp32 bf16; do
      node --import tsx bench/gpu.ts --precision $precision --reps "$reps" --dry-run | tee -a "$summary" || fail "bench/gpu.ts --dry-run failed" 6
      if command -v python3 >/dev/null 2>&1; then
        python3 bench/gpu_torch.py --precision $precision --reps "$reps" --dry-run | tee -a "$summary" || fail "bench/gpu_torch.py --dry-run failed" 6
      else
        say "no python3 here to run bench/gpu_torch.py --dry-run (the GPU machine's python3 has torch)"
      fi
    done
    echo '{"device":"(sample)","rows":[{"model":"resnet20","batch":128,"tf32":true,"captured":false,"imgPerSec":2},
      {"model":"resnet20","batch":128,"tf32":true,"captured":true,"imgPerSec":4}]}' > "$out/sample-ours.json"
    echo '{"device":"(sample)","rows":[{"model":"resnet20","batch":128,"tf32":true,"imgPerSec":1}]}' > "$out/sample-torch.json"
    echo '{"rows":[{"model":"resnet50","batch":64,"precision":"bf16","tf32":true,"captured":false,"imgPerSec":3}]}' > "$out/sample-ours-bf16.json"
    echo '{"rows":[{"model":"resnet50","batch":64,"precision":"bf16","tf32":true,"imgPerSec":2}]}' > "$out/sample-torch-bf16.json"
    report="$(node --import tsx bench/gpu-report.ts "$out/sample-ours.json" "$out/sample-torch.json" "$out/sample-ours-bf16.json" \
      "$out/sample-torch-bf16.json")" || fail "bench/gpu-report.ts failed" 6
    grep -q 'resnet20 .* fp32 .* eager .* 2\.00$' <<< "$report" || fail "bench/gpu-report.ts printed no ratio for the sample: $report" 6
    # The captured step's row, against PyTorch's eager one (the target: 2x on an H200 for ResNet-20).
    grep -q 'resnet20 .* fp32 .* graph .* 4\.00$' <<< "$report" || fail "bench/gpu-report.ts printed no captured-step ratio for the sample: $report" 6
    grep -q 'resnet50 .* bf16 .* eager .* 1\.50$' <<< "$report" || fail "bench/gpu-report.ts printed no bf16 ratio for the sample: $report" 6
    say "the report prints (on sample numbers):"; echo "$report" | tee -a "$summary"
  else
    timeout -k 10 "$(ours_cap)" node --import tsx bench/gpu.ts --reps "$reps" --json "$out/ours.json" || { status=1; say "bench/gpu.ts failed"; }
    PYTHONUNBUFFERED=1 timeout -k 10 "$(torch_cap)" python3 bench/gpu_torch.py --reps "$reps" --json "$out/torch.json" || { status=1; say "bench/gpu_torch.py failed"; }
    timeout -k 10 "$(ours_bf16_cap)" node --import tsx bench/gpu.ts --precision bf16 --reps "$reps" --json "$out/ours-bf16.json" \
      || { status=1; say "bench/gpu.ts --precision bf16 failed"; }
    PYTHONUNBUFFERED=1 timeout -k 10 "$(torch_bf16_cap)" python3 bench/gpu_torch.py --precision bf16 --reps "$reps" \
      --json "$out/torch-bf16.json" || { status=1; say "bench/gpu_torch.py --precision bf16 failed"; }
    echo | tee -a "$summary"
    node --import tsx bench/gpu-report.ts "$out/ours.json" "$out/torch.json" "$out/ours-bf16.json" "$out/torch-bf16.json" | tee -a "$summary"
  fi
fi
[ $dry = 1 ] && say "time caps from here: rebuild $(rebuild_cap) s, tests $(tests_cap) s, TF32 rerun $(tf32_cap) s, NCCL $(nccl_cap) s, benchmarks $(ours_cap) + $(torch_cap) + $(ours_bf16_cap) + $(torch_bf16_cap) s"
say "done, status $status"
exit $status
