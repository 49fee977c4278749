#!/usr/bin/env bash
# How ferromq's throughput grows with the number of queues and of connections:
# mixed workload, 100 B, one message per call, fsync always, RUNS runs each.
#
#   scripts/scaling.sh            # ~3 minutes
#
# Prints one line per run: what varied, msg/s, e2e p99, server CPU s per million.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-2}
MESSAGES=${MESSAGES:-200000}
PORT=${PORT:-17700}
ADDR=127.0.0.1:$PORT
cargo build --release -q --workspace
BIN=target/release/ferromq
BENCH=target/release/ferromq-bench
DIR=$(mktemp -d)
"$BIN" serve --listen "$ADDR" --data-dir "$DIR" 2>/dev/null >/dev/null &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

run() { # label args...
    local label=$1; shift
    "$BENCH" --addr "$ADDR" --server-pid "$PID" --json --messages "$MESSAGES" "$@" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print("%-32s %8.0f msg/s  e2e p99 %8.2f ms  %5.1f CPU s/M" % (sys.argv[1], r["throughput_msgs_per_s"], r["e2e_latency_ms"]["p99"], r["server"]["cpu_s_per_million_msgs"]))' "$label"
}

for run_no in $(seq 1 "$RUNS"); do
    for q in 1 100 10000; do
        run "queues=$q (8 conns x 32)" --queues "$q"
    done
    run "conns=8 (4+4 x 32)" --producers 4 --consumers 4 --depth 32
    run "conns=256 (128+128 x 1)" --producers 128 --consumers 128 --depth 1
    run "conns=1000 (500+500 x 1)" --producers 500 --consumers 500 --depth 1
done
