#!/usr/bin/env bash
# Push-queue delivery throughput to a local subscriber (issue 11): a release server
# on a temporary data directory (--fsync always, --push-allow 127.0.0.1), then
# ferromq-push-bench RUNS times for a unicast queue with one subscriber and a
# multicast queue with three (crates/ferromq-bench/src/push.rs says how the figures
# are taken). The sink runs in the benchmark's process on the same machine.
#
#   scripts/push-bench.sh                    # 3 runs of 20,000 messages each
#   MESSAGES=50000 RUNS=5 scripts/push-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-20000}
RUNS=${RUNS:-3}
PORT=${PORT:-17720}
ADDR=127.0.0.1:$PORT
cargo build --release -q --workspace
BIN=${BIN:-target/release/ferromq}
DIR=$(mktemp -d)
PID=
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
"$BIN" serve --listen "$ADDR" --data-dir "$DIR/data" --push-allow 127.0.0.1 \
    ${SERVER_ARGS:-} 2>/dev/null >/dev/null &
PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
for run in $(seq 1 "$RUNS"); do
    echo "== run $run: unicast, 1 subscriber"
    target/release/ferromq-push-bench --addr "$ADDR" --messages "$MESSAGES" --kind unicast --subscribers 1
    echo "== run $run: multicast, 3 subscribers"
    target/release/ferromq-push-bench --addr "$ADDR" --messages "$MESSAGES" --kind multicast --subscribers 3
done
