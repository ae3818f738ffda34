#!/usr/bin/env bash
# Prepares this working tree for scripts/gpu-check.sh on a lent GPU machine, which has no
# network and no Node.js: builds the addons here (the built build/Release/*.node travel with the
# tree) and puts into the git-ignored .node-bin/ this machine's node binary and the packages the
# checks run on (vitest and tsx) and those a rebuild of the CUDA addon there needs, should the
# carried one not load (cmake-js, node-addon-api, node-api-headers), with their runtime
# dependencies and nothing else, xz-compressed to fit the 64 MiB the tree may carry. Carry
# exactly these three paths:
#   .node-bin  build/Release  dist
# (not all of build/: its CMake intermediates are 15 MB that the check does not need).
set -euo pipefail
cd "$(dirname "$0")/.."

npx cmake-js compile --log-level warn
npm run build:ts >/dev/null
[ -f build/Release/cudnn_resnet_cuda.node ] || { echo "prepare-gpu-check: the CUDA addon was not built (see the configure message above)" >&2; exit 1; }
rm -rf .node-bin
mkdir -p .node-bin
xz -T0 -6 -c "$(command -v node)" > .node-bin/node.xz

# The runtime closure of those packages (dependencies, optional and peer dependencies that are
# installed), less type-only packages and vite's optional peers that a run without CSS never
# loads. Checked by running the suite from a tree holding only these.
node -e '
  const fs = require("fs"), path = require("path");
  const skip = (n) => n.startsWith("@types/") || ["undici-types", "yaml", "lightningcss", "typescript"].includes(n) ||
    n.startsWith("lightningcss-");
  const seen = new Set(), todo = ["vitest", "tsx", "cmake-js", "node-addon-api", "node-api-headers"];
  while (todo.length) {
    const name = todo.pop();
    if (seen.has(name) || skip(name)) continue;
    const file = path.join("node_modules", name, "package.json");
    if (!fs.existsSync(file)) continue;
    seen.add(name);
    const pkg = JSON.parse(fs.readFileSync(file, "utf8"));
    for (const k of ["dependencies", "optionalDependencies", "peerDependencies"]) todo.push(...Object.keys(pkg[k] ?? {}));
  }
  console.log([...seen].sort().map((n) => "node_modules/" + n).join("\n"));
' > .node-bin/packages.txt
tar -C . --dereference -cf - -T .node-bin/packages.txt | xz -T0 -6 > .node-bin/node_modules.tar.xz
rm .node-bin/packages.txt

# Everything that travels: tracked and untracked-not-ignored files, plus the carried paths.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried_bytes=$(du -cb .node-bin build/Release dist | tail -1 | cut -f1)
total=$((tree_bytes + carried_bytes))
awk -v c="$carried_bytes" -v t="$tree_bytes" 'BEGIN { m = 1048576; printf "prepare-gpu-check: carry .node-bin build/Release dist (%.1f MiB) + working tree (%.1f MiB) = %.1f MiB of the 64 MiB limit\n", c / m, t / m, (c + t) / m }'
if [ "$total" -gt $((64 * 1048576)) ]; then
  echo "prepare-gpu-check: over the 64 MiB transfer limit" >&2
  exit 1
fi
