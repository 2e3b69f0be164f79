#!/usr/bin/env bash
# Installs the Debian packages named that are not installed yet (with sudo when not root); quiet when all are.
# Usage: scripts/apt_install.sh WHO PACKAGE...     (WHO prefixes the progress line, e.g. "setup")
set -euo pipefail
who=$1
shift
missing=()
for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
echo "$who: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
