#!/usr/bin/env bash
# The power-loss test (tests/power_loss/): ferromq's data directory on a FUSE layer
# that forgets every write and name change not yet fsynced, killed under load, then
# a "power cut" in the layer, then a restart on what a disk would hold.
#
#   scripts/power-loss-test.sh                      # 3 cuts, 6,000 queues first
#   ITERATIONS=50 scripts/power-loss-test.sh         # more
#
# Needs root (a FUSE mount), /dev/fuse, Debian's libfuse2 (installed here if
# missing) and fusepy from PyPI (in a virtualenv under target/). CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -e /dev/fuse ]; then
    echo "power-loss test: /dev/fuse is missing on this machine" >&2
    exit 1
fi
if ! ldconfig -p | grep -q 'libfuse\.so\.2'; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq libfuse2 >/dev/null
fi
PYTHON=${PYTHON:-python3}
VENV=target/lazyfs-venv
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "fusepy==3.0.1"
cargo build --quiet --bin ferromq
FERROMQ_BIN=${FERROMQ_BIN:-target/debug/ferromq} LAZYFS_PYTHON="$VENV/bin/python" \
    "$PYTHON" tests/power_loss/test_power_loss.py
