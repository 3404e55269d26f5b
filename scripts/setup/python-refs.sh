#!/bin/sh
# Installs the independent references the tests compare against: Debian's python3-torch and python3-numpy (a forward
# pass of each Hugging Face model family, tests/reference/hf_forward.py) and python3-jinja2 (chat templates).
# With them libopenblas0-pthread: Debian's torch calls the system BLAS (libblas.so.3), which is otherwise the netlib
# reference BLAS, many times slower; `research bench` runs its PyTorch peer on it.
# Idempotent: does nothing when /usr/bin/python3 already imports all three and OpenBLAS is installed. Needs root (or sudo)
# and the Debian package registry; the tests call it before their first use of a reference.
set -eu
if /usr/bin/python3 -c "import torch, numpy, jinja2" >/dev/null 2>&1 && dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "ok installed"; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "python-refs.sh: python3-torch/numpy/jinja2 are missing and installing them needs root (apt-get install python3-torch python3-numpy python3-jinja2)" >&2
        exit 1
    fi
fi
# One apt-get at a time: test lists run side by side and may each need a package.
exec 9>/tmp/research-apt.lock
flock -w 1800 9
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends python3-torch python3-numpy python3-jinja2 libopenblas0-pthread >&2
/usr/bin/python3 -c "import torch, numpy, jinja2" || { echo "python-refs.sh: apt-get finished but python3 still cannot import torch, numpy and jinja2" >&2; exit 1; }
