#!/usr/bin/env bash
# The shipped build is one self-contained file: `cargo release-static` (README,
# "Operations") makes a binary that needs no shared library, and it serves from an
# empty chroot, a directory holding nothing but the binary: no libc, no /etc, no
# /dev, no /proc. A push, a reserve, a delete and `stats` go through it there, over
# TCP from the ordinary build of the CLI; SIGTERM stops it cleanly.
# Needs root (chroot). CI runs this script.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "static-test: needs root for chroot" >&2
    exit 1
fi
# STATIC_PROFILE=dev checks the same static link in a debug build (CI: a fat-LTO
# release build for a second target tree costs minutes; the link is the same).
if [ "${STATIC_PROFILE:-release}" = dev ]; then
    cargo build --bin ferromq --target x86_64-unknown-linux-gnu \
        --config "target.x86_64-unknown-linux-gnu.rustflags=['-C', 'target-feature=+crt-static']"
    BIN=target/x86_64-unknown-linux-gnu/debug/ferromq
else
    cargo release-static
    BIN=target/x86_64-unknown-linux-gnu/release/ferromq
fi
CLI=target/debug/ferromq
cargo build --quiet --bin ferromq

# No program interpreter, no NEEDED libraries.
if readelf -l "$BIN" | grep -q 'INTERP'; then
    echo "static-test: $BIN asks for a program interpreter" >&2
    exit 1
fi
if readelf -d "$BIN" | grep -q 'NEEDED'; then
    echo "static-test: $BIN needs shared libraries:" >&2
    readelf -d "$BIN" | grep NEEDED >&2
    exit 1
fi
echo "static-test: $(stat -c %s "$BIN") bytes, no interpreter, no shared library"

ROOT=$(mktemp -d)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$ROOT"' EXIT
cp "$BIN" "$ROOT/ferromq"
ls -A "$ROOT"
chroot "$ROOT" /ferromq serve --listen 127.0.0.1:0 --data-dir /data >"$ROOT.out" 2>"$ROOT.err" &
PID=$!
for _ in $(seq 1 200); do
    grep -q '^ferromq listening on' "$ROOT.out" 2>/dev/null && break
    kill -0 $PID 2>/dev/null || { cat "$ROOT.err" >&2; exit 1; }
    sleep 0.05
done
ADDR=$(sed -n 's/^ferromq listening on //p' "$ROOT.out")
[ -n "$ADDR" ] || { echo "static-test: no address" >&2; cat "$ROOT.err" >&2; exit 1; }
"$CLI" push --addr "$ADDR" jobs one two >/dev/null
RESERVED=$("$CLI" reserve --addr "$ADDR" jobs --json)
ID=$(echo "$RESERVED" | sed -n 's/.*"id":\([0-9]*\).*/\1/p')
RID=$(echo "$RESERVED" | sed -n 's/.*"reservation_id":\([0-9]*\).*/\1/p')
[ -n "$ID" ] && [ -n "$RID" ] || { echo "static-test: reserve failed: $RESERVED" >&2; exit 1; }
"$CLI" delete --addr "$ADDR" jobs "$ID" --reservation-id "$RID"
"$CLI" stats --addr "$ADDR"
"$CLI" health --addr "$ADDR"
kill -TERM $PID
wait $PID
trap 'rm -rf "$ROOT" "$ROOT.out" "$ROOT.err"' EXIT
[ -f "$ROOT/data/db" ] || { echo "static-test: no data written in the chroot" >&2; exit 1; }
echo "static-test: served from an empty chroot and stopped cleanly"

# Host names without NSS modules: glibc's built-in `files` lookup reads /etc/hosts.
mkdir -p "$ROOT/etc"
echo "127.0.0.1 queue-host" >"$ROOT/etc/hosts"
chroot "$ROOT" /ferromq serve --listen queue-host:0 --data-dir /data >"$ROOT.out" 2>"$ROOT.err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$ROOT" "$ROOT.out" "$ROOT.err"' EXIT
for _ in $(seq 1 200); do
    grep -q '^ferromq listening on 127.0.0.1:' "$ROOT.out" 2>/dev/null && break
    kill -0 $PID 2>/dev/null || { cat "$ROOT.err" >&2; exit 1; }
    sleep 0.05
done
grep -q '^ferromq listening on 127.0.0.1:' "$ROOT.out" || { echo "static-test: queue-host not resolved" >&2; exit 1; }
echo "static-test: a host name from /etc/hosts resolved in the chroot"
