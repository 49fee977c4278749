#!/usr/bin/env bash
# The overload test of the hardening issue (#10): measure the server's capacity,
# then offer it FACTOR times that for DURATION and report what it did with the
# excess (crates/ferromq-bench/src/overload.rs says how each figure is taken).
#
#   scripts/overload.sh                      # ~1 minute: 10x for 20 s
#   FACTOR=10 DURATION=60s RUNS=3 scripts/overload.sh
#
# The server runs with --max-queue-messages MAX_QUEUE_MESSAGES (default 200,000),
# the bound whose refusals the flood should meet. Capacity is the consumed rate of a
# mixed ferromq-bench run (4 + 4 connections x 32, 100 B) against the same server.
# The load generator runs at nice 19: on a 2-CPU machine it needs about a CPU of its
# own, and should take it from the server as little as it can.
set -euo pipefail
cd "$(dirname "$0")/.."
FACTOR=${FACTOR:-10}
DURATION=${DURATION:-20s}
AFTER=${AFTER:-5s}
RUNS=${RUNS:-1}
CAPACITY_SECONDS=${CAPACITY_SECONDS:-10}
MAX_QUEUE_MESSAGES=${MAX_QUEUE_MESSAGES:-200000}
PORT=${PORT:-17710}
ADDR=127.0.0.1:$PORT
cargo build --release -q --workspace
BIN=${BIN:-target/release/ferromq}  # BIN=path runs another build (a before/after)
DIR=$(mktemp -d)
PID=
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
start() { # data dir, extra arguments...
    local data=$1; shift
    "$BIN" serve --listen "$ADDR" --data-dir "$data" "$@" 2>/dev/null >/dev/null &
    PID=$!
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
}

# The capacity, on a server without the limit (a mixed run's producers outrun its
# consumers, so its backlog could reach the limit and stop the run).
start "$DIR/capacity"
CAPACITY=$(target/release/ferromq-bench --addr "$ADDR" --duration "${CAPACITY_SECONDS}s" \
    --messages 1000000000 --quiet --json |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f" % (r["consumed"] / r["elapsed_s"]))')
kill $PID; wait $PID 2>/dev/null || true
echo "capacity: $CAPACITY msg/s consumed (mixed, 4+4 x 32, ${CAPACITY_SECONDS} s)"
start "$DIR/flood" --max-queue-messages "$MAX_QUEUE_MESSAGES"
for run in $(seq 1 "$RUNS"); do
    echo "== run $run: ${FACTOR}x for $DURATION"
    nice -n 19 target/release/ferromq-overload --addr "$ADDR" --capacity "$CAPACITY" \
        --factor "$FACTOR" --duration "$DURATION" --after "$AFTER" --server-pid "$PID"
done
