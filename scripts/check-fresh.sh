#!/usr/bin/env bash
# `make check-fresh`: the whole of .ci/run, from a fresh clone of this checkout's HEAD, in a
# clean Debian bookworm root filesystem (debootstrap --variant=minbase: none of
# debian-packages.txt is installed, not even python3 or make), so the packages the suite
# needs must come from .ci/run itself.
#
#   sudo scripts/check-fresh.sh [--keep] [-- COMMAND...]   (default COMMAND: bash .ci/run)
#
# Needs root, debootstrap, unshare and chroot; the mirror is $CHECK_FRESH_MIRROR (default
# http://deb.debian.org/debian). Everything runs in private mount and PID namespaces: the
# root filesystem's mounts vanish with them, and so does every process started inside.
# From the host the chroot gets only what a CI runner would give it:
#   - /etc/resolv.conf, and this host's pip set-up (its config files, PIP_* variables,
#     CA bundle and extra CAs, the local package mirrors they name, bind-mounted read-only);
#   - Python 3.13 for the OctoPrint 2.0 leg of .ci/run (bookworm has none): the host's
#     python3.13 installation, bind-mounted read-only at the same path.
# The work folder (under /var/tmp) is deleted afterwards, unless the run failed (its
# test-artifacts/ are in there) or --keep is given.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
suite=bookworm
mirror="${CHECK_FRESH_MIRROR:-http://deb.debian.org/debian}"
src=/src/OctoPrint-LayerCapture

say() { printf '[check-fresh %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { say "$*" >&2; exit 1; }

# The folders pip reads packages from: file:// URLs and absolute paths in pip's config files
# and PIP_* variables (a "simple" index links to ../../files: its parent is taken).
pip_mirrors() {
  {
    cat /etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" \
      2>/dev/null || true
    env | grep '^PIP_' || true
  } | grep -E '^[[:space:]]*(PIP_)?(find[-_]links|extra[-_]index[-_]url|index[-_]url)' -i \
    | sed -E 's/^[^=]*=//' | tr ' ' '\n' | sed -nE 's#^(file://)?(/[^[:space:]]+)$#\2#p' \
    | sed -E 's#/simple/?$##' | sort -u
}

inside() {
  local work="$1" commit="$2"
  shift 2
  local root="$work/root" started
  started=$(date +%s)
  say "debootstrap --variant=minbase $suite from $mirror (log: $work/debootstrap.log)"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; die "debootstrap failed"; }
  say "root filesystem ready in $(($(date +%s) - started)) s"

  local package program rest preinstalled=()
  while read -r package program rest; do
    case "$package" in '' | '#'*) continue ;; esac
    if [ "$(chroot "$root" dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ]; then
      preinstalled+=("$package")
    fi
  done <"$here/debian-packages.txt"
  say "packages of debian-packages.txt already in the clean system: ${preinstalled[*]:-none}"

  say "fresh clone of $commit into $src"
  git clone -q --no-hardlinks "$here" "$root$src"
  git -C "$root$src" checkout -q --detach "$commit"

  cp /etc/resolv.conf "$root/etc/resolv.conf"
  local file
  for file in /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt \
    "$HOME/.config/pip/pip.conf" /etc/ssl/certs/ca-certificates.crt; do
    if [ -f "$file" ]; then
      mkdir -p "$root$(dirname "$file")"
      cp "$file" "$root$file"
    fi
  done
  # kept by update-ca-certificates when a package installs ca-certificates
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  fi

  bind_ro() {
    mkdir -p "$root$1"
    mount --bind "$1" "$root$1"
    mount -o remount,bind,ro "$root$1"
  }
  local folder
  while read -r folder; do
    if [ -d "$folder" ]; then
      say "pip mirror $folder (read-only)"
      bind_ro "$folder"
    fi
  done < <(pip_mirrors)

  # found the way `make test-compat` finds it (PATH, then pyenv's versions)
  local py313 finder="import sys; sys.path.insert(0, '$here/scripts'); import compat
print(compat.find_python('3.13', {}) or '')"
  py313=$(python3 -c "$finder" 2>/dev/null || true)
  if [ -n "$py313" ] && py313=$("$py313" -c 'import sys; print(sys.base_prefix)'); then
    say "Python 3.13 for the OctoPrint 2.0 leg: $py313 (read-only)"
    bind_ro "$py313"
    ln -sf "$py313/bin/python3.13" "$root/usr/local/bin/python3.13"
  else
    say "no python3.13 on this host: the OctoPrint 2.0 leg of .ci/run will fail"
  fi

  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys"
  mount --make-rslave "$root/sys"
  mount --rbind /dev "$root/dev"
  mount --make-rslave "$root/dev"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"

  local pip_env=() name
  for name in $(compgen -e | grep '^PIP_' || true); do
    pip_env+=("$name=${!name}")
  done
  local command=("$@")
  [ ${#command[@]} -gt 0 ] || command=(bash .ci/run)
  say "running '${command[*]}' in the chroot as root"
  started=$(date +%s)
  local status=0
  env -i HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${pip_env[@]}" \
    chroot "$root" /bin/bash -c 'cd "$0" && exec "$@"' "$src" "${command[@]}" || status=$?
  say "'${command[*]}' ended with status $status after $(($(date +%s) - started)) s"
  return "$status"
}

outer() {
  local keep=0 commit work started status
  if [ "${1:-}" = "--keep" ]; then
    keep=1
    shift
  fi
  [ "${1:-}" = "--" ] && shift

  [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mounts)"
  for tool in debootstrap unshare chroot git; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y debootstrap util-linux git)"
  done
  commit=$(git -C "$here" rev-parse HEAD)
  if [ -n "$(git -C "$here" status --porcelain --untracked-files=no)" ]; then
    say "uncommitted changes are not part of the check: it runs $commit"
  fi
  work=$(mktemp -d /var/tmp/lc-check-fresh-XXXXXX)
  say "work folder $work"
  started=$(date +%s)
  status=0
  unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
    "$0" --inside "$work" "$commit" "$@" || status=$?
  say "check-fresh ended with status $status after $(($(date +%s) - started)) s"

  # The namespace's mounts went with it; never delete through one that is somehow left.
  if findmnt -rn -o TARGET | grep -q "^$work/"; then
    die "mounts left under $work: not deleted"
  fi
  if [ "$keep" = 1 ] || [ "$status" != 0 ]; then
    # a failed run stays for a look at root/src/OctoPrint-LayerCapture/test-artifacts/
    say "kept $work (remove it with: rm -rf --one-file-system $work)"
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$status"
}

# one line, read whole before it runs: editing this file during a run cannot change the run
if [ "${1:-}" = "--inside" ]; then shift; inside "$@"; else outer "$@"; fi; exit $?
