#!/bin/bash
# The cost of issue 14's features in use (BENCHMARKS.md, "Beyond every peer"):
# the mixed benchmark against a release server of this checkout, plain and with
# each feature in use, and against a server built from BASE_BIN (another
# checkout's release binary, optional), the variants in rotation.
#
#   cargo build --release --workspace
#   BASE_BIN=/path/to/old/ferromq scripts/ab-features.sh ROUNDS OUT_DIR
#   VARIANTS="plain hand-off push-then-delete" scripts/ab-features.sh ...  (a subset)
#   python3 - OUT_DIR < (the summary below)
#
# Servers listen on 127.0.0.1:7711 (this checkout) and :7712 (BASE_BIN) with
# fresh data directories; every run is bounded by `timeout`. Summarize with:
#   for f in OUT_DIR/*.json: server.cpu_s_per_million_msgs, throughput_msgs_per_s
set -u
rounds=${1:-3}
out=${2:-target/ab-features}
head_bin=${HEAD_BIN:-target/release/ferromq}
bench=${BENCH_BIN:-target/release/ferromq-bench}
mkdir -p "$out"
start() { # binary port -> pid
  local dir
  dir=$(mktemp -d /tmp/ferromq-ab.XXXX)
  "$1" serve --listen "127.0.0.1:$2" --data-dir "$dir" > "$dir.log" 2>&1 &
  echo $!
}
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no server on port $1" >&2
  exit 1
}
hp=$(start "$head_bin" 7711)
wait_port 7711
bp=
if [ -n "${BASE_BIN:-}" ]; then
  bp=$(start "$BASE_BIN" 7712)
  wait_port 7712
fi
common=(--workload mixed --messages 50000 --producers 4 --consumers 4 --depth 16 --json --quiet)
variants=" ${VARIANTS:-base-plain plain priorities auto-timeout named-consumer keys-1k keys-100k hand-off push-then-delete push-then-delete-each} "
run() { # name port pid [flags...]
  local name=$1 port=$2 pid=$3
  shift 3
  case "$variants" in *" $name "*) ;; *) return 0 ;; esac
  timeout 120 "$bench" --addr "127.0.0.1:$port" --server-pid "$pid" "${common[@]}" "$@" \
    > "$out/$name-$round.json"
}
for round in $(seq 1 "$rounds"); do
  [ -n "$bp" ] && run base-plain 7712 "$bp"
  run plain 7711 "$hp"
  run priorities 7711 "$hp" --priorities 4
  run auto-timeout 7711 "$hp" --auto-timeout
  FERROMQ_CONSUMER=bench-worker run named-consumer 7711 "$hp"
  run keys-1k 7711 "$hp" --keys 1000
  run keys-100k 7711 "$hp" --keys 100000
  run hand-off 7711 "$hp" --finish hand-off
  run push-then-delete 7711 "$hp" --finish push-then-delete
  run push-then-delete-each 7711 "$hp" --finish push-then-delete-each
done
kill "$hp" $bp
wait "$hp" $bp 2>/dev/null
echo "results in $out"
