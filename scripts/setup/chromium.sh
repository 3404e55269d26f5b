#!/bin/sh
# Installs Debian's Chromium (and fonts-liberation, so text renders), which the figure export (PNG, SVG, PDF) drives.
# Idempotent: does nothing when /usr/bin/chromium already exists. Needs root (or sudo) and the
# Debian package registry; called by Research.Chromium.ensure () when chromium is missing.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "chromium.sh: /usr/bin/chromium is missing and installing it needs root (apt-get install chromium)" >&2
        exit 1
    fi
fi
# One apt-get at a time: test lists run side by side and may each need a package.
exec 9>/tmp/research-apt.lock
flock -w 1800 9
[ -x /usr/bin/chromium ] && exit 0   # installed while this one waited
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium fonts-liberation
[ -x /usr/bin/chromium ] || { echo "chromium.sh: apt-get finished but /usr/bin/chromium is still missing" >&2; exit 1; }
