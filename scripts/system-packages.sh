#!/usr/bin/env bash
# The Debian packages of debian-packages.txt that some groups need: present, installed, or
# one clear message.
#
#   scripts/system-packages.sh [--check] [--for WHAT] GROUP...
#
# For every listed package of those groups whose program is missing: as root, one
# `apt-get update` and one `apt-get install` of all of them; otherwise (or with --check,
# which never installs) the exact apt-get line on stderr and exit status 1. WHAT names the
# entry point in the message (default: the groups). $PYTHON (default python3) is the
# interpreter `python:<module>` entries are checked with; $DEBIAN_PACKAGES another list.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
list="${DEBIAN_PACKAGES:-$here/debian-packages.txt}"
python="${PYTHON:-python3}"
check_only=0
what=""
groups=()
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check_only=1 ;;
    --for) what="$2"; shift ;;
    -*) echo "system-packages.sh: unknown option $1" >&2; exit 2 ;;
    *) groups+=("$1") ;;
  esac
  shift
done
if [ ${#groups[@]} -eq 0 ]; then
  echo "usage: system-packages.sh [--check] [--for WHAT] GROUP..." >&2
  exit 2
fi
what="${what:-${groups[*]}}"

present() {  # whether every comma-separated program of $1 is there
  local program
  for program in ${1//,/ }; do
    case "$program" in
      python:*) "$python" -c "import ${program#python:}" >/dev/null 2>&1 ;;
      python-h:*)
        "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], sys.argv[1])))' \
          "${program#python-h:}" >/dev/null 2>&1
        ;;
      /*) [ -x "$program" ] ;;
      *) command -v "$program" >/dev/null 2>&1 ;;
    esac || return 1
  done
}

wanted() {  # whether the comma-separated groups $1 share one with the arguments
  local group asked
  for group in ${1//,/ }; do
    for asked in "${groups[@]}"; do
      [ "$group" = "$asked" ] && return 0
    done
  done
  return 1
}

missing() {
  local package program needed rest
  while read -r package program needed rest; do
    case "$package" in '' | '#'*) continue ;; esac
    if wanted "$needed" && ! present "$program"; then
      printf '%s\n' "$package"
    fi
  done <"$list"
}

mapfile -t absent < <(missing)
[ ${#absent[@]} -eq 0 ] && exit 0

line="apt-get install -y ${absent[*]}"
if [ "$check_only" = 1 ] || [ "$(id -u)" != 0 ]; then
  {
    echo "$what needs Debian packages that are not installed: ${absent[*]}"
    echo "Install them with:  sudo $line"
    echo "(or run $what as root, which installs them; the list is $list)"
  } >&2
  exit 1
fi

echo "$what: installing Debian packages ${absent[*]} (apt-get update, then $line)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${absent[@]}" >/dev/null
mapfile -t still < <(missing)
if [ ${#still[@]} -gt 0 ]; then
  echo "$what: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
