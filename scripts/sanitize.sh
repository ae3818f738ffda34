#!/usr/bin/env bash
# Runs the native code under AddressSanitizer, LeakSanitizer and UBSan
# (docs/reliability.md, section "Sanitizers"):
#   1. builds the CPU addon with -DCR_SANITIZE=ON into build-sanitize/ (never over build/Release);
#   2. runs test/sanitize/workload.ts (every entry point of the addon, its errors, a few ResNet
#      training steps, worker threads) and a few vitest files, with the sanitizer runtimes
#      preloaded into node (which is not instrumented) and the addon loaded from build-sanitize
#      (CUDNN_RESNET_ADDON_DIR);
#   3. reads every report (test/sanitize/report.mjs): a memory error or undefined behaviour
#      anywhere fails, and so does a leak with a frame in our code; Node's own leaks are listed.
#
# Usage: scripts/sanitize.sh [--steps N] [--out DIR] [--no-build] [--no-vitest]
#   --steps N     ResNet training steps of the workload (default 3)
#   --out DIR     the build folder (default build-sanitize)
#   --no-build    reuse the build folder as it is
#   --no-vitest   the workload only
# Needs g++ (its libasan and libubsan), cmake and npm ci done; CI runs it after the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

steps=3
out=build-sanitize
build=1
vitest=1
while (($#)); do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-vitest) vitest=0; shift ;;
    *) echo "usage: scripts/sanitize.sh [--steps N] [--out DIR] [--no-build] [--no-vitest]" >&2; exit 2 ;;
  esac
done

start=$SECONDS
if ((build)); then
  echo "sanitize: building the CPU addon with AddressSanitizer and UBSan into $out/"
  npx cmake-js compile -O "$out" --CDCR_SANITIZE=ON --log-level warn
fi
[[ -f $out/Release/cudnn_resnet_cpu.node ]] || { echo "sanitize: $out/Release/cudnn_resnet_cpu.node is missing (run without --no-build)" >&2; exit 1; }
addon_dir="$(cd "$out/Release" && pwd)"
echo "sanitize: build $((SECONDS - start)) s"

# The runtimes of the compiler that built the addon: node must load them before anything else.
cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$out/CMakeCache.txt")
preload=""
for lib in libasan.so libubsan.so; do
  path=$("${cxx:-g++}" -print-file-name="$lib")
  [[ $path == /* && -e $path ]] || { echo "sanitize: ${cxx:-g++} has no $lib (install its libasan/libubsan)" >&2; exit 1; }
  preload+="${preload:+ }$path"
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/cudnn-resnet-sanitize.XXXXXX")
# Memory errors abort the process (abort_on_error), wherever they happen. Leaks are checked in
# the workload only, which ends normally so that Node tears the addon down first; a leak does not
# change its exit status (exitcode=0), report.mjs decides which leaks are ours. Full allocation
# stacks there (fast_unwind_on_malloc=0), so that memory allocated inside oneDNN or libstdc++,
# which have no frame pointers, still shows the frame of ours that asked for it.
# intercept_tls_get_addr=0: LeakSanitizer of GCC 12 on glibc 2.36 now and then reads a bogus
# dynamic-TLS range and crashes (1 run in 40); without the interception, dynamic TLS is still
# scanned, as heap blocks reachable from each thread's static TLS.
# The vitest processes end without any teardown (vitest stops its workers with a signal, and
# test/teardown.test.ts's children exit or throw on purpose): there Node frees nothing, V8's own
# bookkeeping allocated during our calls would carry our frames, so only memory errors and UB
# are checked (detect_leaks=0). Each run's output is kept too: UBSan writes its findings there.
sanitized() {
  local name=$1 options=$2
  shift 2
  env CUDNN_RESNET_ADDON_DIR="$addon_dir" CUDNN_RESNET_POISON=1 LD_PRELOAD="$preload" \
    ASAN_OPTIONS="abort_on_error=1:intercept_tls_get_addr=0:log_path=$logs/asan:$options" \
    LSAN_OPTIONS="suppressions=$PWD/test/sanitize/lsan.supp:print_suppressions=1" \
    UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1" \
    "$@" 2>&1 | tee "$logs/output.$name"
}

failed=()
t=$SECONDS
sanitized workload "detect_leaks=1:exitcode=0:fast_unwind_on_malloc=0" node --import tsx test/sanitize/workload.ts "$steps" || failed+=("workload (exit status $?)")
echo "sanitize: workload $((SECONDS - t)) s"
if ((vitest)); then
  # Many more shapes and options than the workload, and process.exit() with work queued. One
  # OpenMP thread: the workload covers two, and two threads collapse by 10x here whenever another
  # process wants the cores (leak.test.ts took 76 s instead of 6).
  t=$SECONDS
  OMP_NUM_THREADS=1 sanitized vitest "detect_leaks=0" npx vitest run test/ops.test.ts test/gradcheck.test.ts test/errors.test.ts test/nn.test.ts \
    test/leak.test.ts test/train.test.ts test/worker.test.ts test/teardown.test.ts || failed+=("vitest (exit status $?)")
  echo "sanitize: vitest $((SECONDS - t)) s"
fi
node test/sanitize/report.mjs "$logs" || failed+=("the reports")
echo "sanitize: $((SECONDS - start)) s in all"
if ((${#failed[@]})); then
  echo "sanitize: FAILED: $(IFS=,; echo "${failed[*]}" | sed 's/,/, /g'); the reports are in $logs" >&2
  exit 1
fi
rm -rf "$logs"
echo "sanitize: passed"
