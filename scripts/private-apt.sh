# Sourced, not run: gives the developer scripts (fetch-onednn.sh, build-onednn.sh) apt access
# to another Debian release without touching the system's apt state. The sources list, package
# lists and caches live in a folder of their own; the system's sources.list(.d), lists and
# pkgcache are neither read nor written, so the machine's next `apt-get install` sees exactly
# what it saw before.
#
#   private_apt DIR SUITE [deb-src]
#     writes DIR/sources.list (SUITE main from the system's Debian mirror, and its deb-src line
#     when asked), runs `apt-get update` on it and sets PRIVATE_APT to the -o options that every
#     later apt-get / apt-cache call passes.
#   debian_mirror
#     prints the Debian mirror of the system's own sources (DEBIAN_MIRROR overrides it;
#     deb.debian.org where the system has none, e.g. on Ubuntu).

debian_mirror() {
  if [[ -n ${DEBIAN_MIRROR:-} ]]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  local uri
  # deb822 files (URIs: lines) first, then one-line sources; the security archive is skipped.
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n' |
    grep -E '/debian/?$' | head -1 || true)
  if [[ -z $uri ]]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' | grep -E '/debian/?$' | head -1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

private_apt() {
  local dir=$1 suite=$2 src=${3:-}
  local mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg signed=""
  mirror=$(debian_mirror)
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d"
  : >"$dir/status"
  # A release newer than the machine's is signed with its own key and the previous release's:
  # Debian 12's debian-archive-keyring verifies Debian 13.
  [[ -f $keyring ]] && signed="[signed-by=$keyring] "
  {
    echo "deb ${signed}$mirror $suite main"
    [[ $src == deb-src ]] && echo "deb-src ${signed}$mirror $suite main"
  } >"$dir/sources.list"
  # APT::Sandbox::User=root: the private folders belong to whoever runs this, not to _apt.
  PRIVATE_APT=(-o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=$dir/sources.list.d"
    -o "Dir::State::Lists=$dir/lists" -o "Dir::State::status=$dir/status" -o "Dir::Cache=$dir/cache"
    -o "APT::Sandbox::User=$(id -un)")
  echo "private-apt: $suite from $mirror (state in $dir)"
  apt-get "${PRIVATE_APT[@]}" -qq update
}
