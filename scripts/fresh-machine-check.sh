#!/usr/bin/env bash
# Runs the README's set-up commands as a new user would, on a fresh Debian: a minimal Debian
# (debootstrap --variant=minbase) with only the base machine added (python3, g++, make, and this
# host's node and npm copied in), a clean clone of this repository's committed HEAD, then exactly
# the commands of the README's "Install" block, then `backends()` (README, "GPU") and the
# host-dependency guard (scripts/check-host-deps.ts). Nothing of this host's packages leaks in:
# the build sees the chroot's /usr only. A developer tool, not run by CI (docs/building.md,
# "Checking a fresh machine").
#
# Usage: scripts/fresh-machine-check.sh [--suite bookworm] [--dir /var/tmp/cudnn-resnet-fresh]
#                                       [--preinstall "PKG ..."] [--cmakelists REV] [--test] [--shell]
#   --suite       the Debian release (bookworm: Debian 12, trixie: Debian 13)
#   --dir         where the chroots live; DIR/SUITE-base (debootstrap, kept and reused) is copied
#                 to DIR/SUITE for every run
#   --preinstall  packages installed before the README's commands: a machine that is not fresh
#                 (e.g. "ocl-icd-opencl-dev", to show what the guard catches)
#   --cmakelists  the CMakeLists.txt of another commit (e.g. 07f2a79, before f4e8e67)
#   --test        then the whole test suite (npm test): on Debian 13, the suite on oneDNN 3.x
#   --shell       an interactive shell in the chroot afterwards (or when a step fails)
# Needs root, debootstrap (apt-get install debootstrap) and the network (the Debian mirror of
# this host's apt sources, and the npm registry). About 6 minutes on 2 cores, most of it npm ci.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
source "$here/private-apt.sh"

suite=bookworm
dir=/var/tmp/cudnn-resnet-fresh
preinstall=""
cmakelists=""
tests=0
shell=0
while (($#)); do
  case "$1" in
    --suite) suite="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --preinstall) preinstall="$2"; shift 2 ;;
    --cmakelists) cmakelists="$2"; shift 2 ;;
    --test) tests=1; shift ;;
    --shell) shell=1; shift ;;
    *) sed -n '/^# Usage/,/^# Needs/p' "$0" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "fresh-machine: run as root (debootstrap, chroot, mount)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "fresh-machine: install debootstrap first (apt-get install debootstrap)" >&2; exit 1; }

start=$SECONDS
base="$dir/$suite-base"
root="$dir/$suite"
mkdir -p "$dir"
if [[ ! -f $base/.complete ]]; then
  rm -rf "$base"
  echo "fresh-machine: debootstrap $suite (minbase) with the base machine's python3, g++ and make"
  debootstrap --variant=minbase --include=python3,g++,make,ca-certificates "$suite" "$base" "$(debian_mirror)" >"$dir/$suite-debootstrap.log"
  touch "$base/.complete"
fi

unmount() {
  for m in dev/pts dev proc; do
    mountpoint -q "$root/$m" && umount "$root/$m"
  done
  return 0
}
trap unmount EXIT
unmount
rm -rf "$root"
cp -a "$base" "$root"

# The base machine's node and npm: this host's own, copied (the chroot's apt offers none as new).
node_bin="$(readlink -f "$(command -v node)")"
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
install -D "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
# This host's network, not its packages: name resolution, and its CA bundle for npm's TLS
# (the host may reach the registry through a proxy that signs with its own CA).
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}" "$root/etc/host-ca.crt"

git clone --quiet --no-hardlinks "$repo" "$root/root/cudnn-resnet"
commit=$(git -C "$root/root/cudnn-resnet" rev-parse --short HEAD)
if [[ -n $cmakelists ]]; then
  git -C "$repo" show "$cmakelists:CMakeLists.txt" >"$root/root/cudnn-resnet/CMakeLists.txt"
fi
# The README's set-up commands, exactly: the sh block under "## Install", comments dropped.
commands=$(awk '/^## Install/{s=1} s&&/^```sh/{b=1; next} b&&/^```/{exit} b' "$repo/README.md" | sed 's/[[:space:]]*#.*$//' | sed '/^$/d')
[[ -n $commands ]] || { echo "fresh-machine: no sh block under README.md's '## Install'" >&2; exit 1; }

mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

dirty=""
if [[ -n $preinstall ]]; then
  dirty="echo 'fresh-machine: + apt-get install $preinstall (a machine that is not fresh)'
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $preinstall >/dev/null"
fi
cat >"$root/root/fresh-machine.sh" <<EOF
set -euo pipefail
cd /root/cudnn-resnet
$dirty
while IFS= read -r command; do
  echo "fresh-machine: + \$command"
  bash -c "\$command"
done <<'COMMANDS'
$commands
COMMANDS
echo "fresh-machine: + node -e \"import('cudnn-resnet').then(m => console.log(m.backends()))\""
node -e "import('cudnn-resnet').then((m) => { const b = m.backends(); console.log(b); if (!b.find((x) => x.name === 'cpu')?.available) process.exit(1); })"
echo "fresh-machine: + npm run check:host-deps"
npm run --silent check:host-deps
EOF
if ((tests)); then
  printf '%s\n' 'echo "fresh-machine: + npm test"' 'npm test' >>"$root/root/fresh-machine.sh"
fi

echo "fresh-machine: $suite, clone of $commit${cmakelists:+ with CMakeLists.txt of $cmakelists}${preinstall:+, $preinstall preinstalled}; README's commands:"
sed 's/^/  /' <<<"$commands"
rc=0
chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_EXTRA_CA_CERTS=/etc/host-ca.crt \
  bash /root/fresh-machine.sh || rc=$?
if ((shell)); then
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_EXTRA_CA_CERTS=/etc/host-ca.crt bash -l
fi
echo "fresh-machine: $suite $( ((rc == 0)) && echo passed || echo "FAILED (exit status $rc)") in $(((SECONDS - start) / 60)) min; the chroot is $root"
exit "$rc"
