#!/usr/bin/env bash
# Compiles and links the CPU addon against oneDNN 3.x on a machine whose apt offers 2.x: Debian
# 13's libdnnl-dev and library, unpacked by scripts/fetch-onednn.sh, through DNNL_ROOT, into
# build-onednn3/ (the normal build is untouched). Then checks what can be checked without running
# it (Debian 13's library needs glibc 2.38 and GCC 14's libstdc++, newer than Debian 12's):
#   - the addon records libdnnl.so.3* as NEEDED, and a RUNPATH to the unpacked library;
#   - every oneDNN symbol the addon imports is defined by that library. A shared object links
#     with undefined symbols (node provides napi_*), so the linker alone would not notice one
#     that oneDNN 3.x lacks; this comparison does.
# Where the library does load (Debian 13, Ubuntu 24.04), the addon is loaded and asked for its
# oneDNN version.
#
# Usage: scripts/check-onednn3.sh [--suite trixie] [--out build-onednn3]
set -euo pipefail
cd "$(dirname "$0")/.."

suite=trixie
out=build-onednn3
while (($#)); do
  case "$1" in
    --suite) suite="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: scripts/check-onednn3.sh [--suite trixie] [--out DIR]" >&2; exit 2 ;;
  esac
done

start=$SECONDS
# fetch-onednn.sh prints the prefix last. Its output goes to stderr once it is done, not through
# `tee /dev/stderr`: reopening /dev/stderr truncates a log file that stdout and stderr share (a CI
# log written to a file lost everything before this step).
fetched=$(bash scripts/fetch-onednn.sh --suite "$suite")
printf '%s\n' "$fetched" >&2
prefix=$(tail -1 <<<"$fetched")
echo "check-onednn3: building the CPU addon against $prefix into $out/"
npx cmake-js compile -O "$out" -T cudnn_resnet_cpu --CDDNNL_ROOT="$prefix" --log-level warn
addon="$out/Release/cudnn_resnet_cpu.node"
[[ -f $addon ]] || { echo "check-onednn3: $addon was not built" >&2; exit 1; }

failed=()
dynamic=$(readelf -d "$addon")
major=$(sed -n 's/^#define DNNL_VERSION_MAJOR *//p' "$prefix/include/oneapi/dnnl/dnnl_version.h")
needed=$(sed -n 's/.*(NEEDED).*\[\(libdnnl\.so[^]]*\)\].*/\1/p' <<<"$dynamic")
[[ $needed == "libdnnl.so.$major"* ]] || failed+=("NEEDED names '${needed:-no libdnnl}', not libdnnl.so.$major*")
library=$(find "$prefix" -name "$needed" -print -quit 2>/dev/null || true)
[[ -n $library ]] || failed+=("$needed is not in $prefix")
grep -q "(RUNPATH).*$(dirname "${library:-$prefix/lib/x}")" <<<"$dynamic" || failed+=("no RUNPATH to $(dirname "${library:-$prefix/lib/x}")")
if [[ -n $library ]]; then
  missing=$(comm -23 <(nm -D --undefined-only "$addon" | awk '{print $2}' | grep -i dnnl | sort -u) \
    <(nm -D --defined-only "$library" | awk '{print $3}' | sort -u))
  [[ -z $missing ]] || failed+=("symbols missing from $needed: $(tr '\n' ' ' <<<"$missing")")
fi
((${#failed[@]})) || echo "check-onednn3: $addon needs $needed; its $(nm -D --undefined-only "$addon" | grep -ci dnnl) oneDNN symbols are all defined there"

# Loading it tells apart "runs here" from "needs a newer C library"; neither fails the check.
node -e '
  let addon;
  try { addon = require(require("path").resolve(process.argv[1])); }
  catch (e) { console.log("check-onednn3: not loadable on this machine (expected on Debian 12):", e.message.split("\n")[0]); process.exit(0); }
  console.log("check-onednn3: loaded:", JSON.stringify(addon.info().versions)); addon.shutdown();' "$addon"

echo "check-onednn3: $((SECONDS - start)) s"
if ((${#failed[@]})); then
  printf 'check-onednn3: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "check-onednn3: passed"
