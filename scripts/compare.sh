#!/usr/bin/env bash
# Side-by-side benchmark: ferromq against beanstalkd and Redis on this machine, with
# the same workload definitions, driven by `ferromq-bench` (one load generator for
# every server). Installs what it needs on a fresh Debian machine, starts each server
# on 127.0.0.1 with a fresh data directory, runs every workload RUNS times, and
# prints a Markdown summary (medians) that BENCHMARKS.md quotes.
#
#   scripts/compare.sh                 # everything, 3 runs each (~10 minutes)
#   RUNS=1 MESSAGES=50000 scripts/compare.sh
#   SERVERS="ferromq redis-always" scripts/compare.sh
#   WORKLOADS=everyday scripts/compare.sh   # only the everyday-load rows (~3 minutes)
#
# WORKLOADS (default "saturated everyday hold"): saturated = push, drain, mixed and
# the 5k msg/s latency run; everyday = 1 producer + 1 consumer connection, open loop
# at 1,000 msg/s (depth 1) and 5,000 msg/s (depth 8) for EVERYDAY_SECONDS, with server CPU and context
# switches per message, and the raw 4 KiB append + fdatasync floor at 1,000/s
# (scripts/fsync_probe.py); hold = memory holding HOLD messages (and ferromq's
# restart with them); backlog (not in the default set: ~2 minutes and 4 GB of disk) =
# ferromq only, holding HOLD and then BACKLOG messages (default 20,000,000): RSS, a
# batched push and drain of 1 M against each backlog, and the restart.
#
# A second ferromq build runs as server "ferromq-base" with BASE_BIN=path/to/ferromq
# (e.g. a release build of an older commit), for a before/after in the same run:
#   BASE_BIN=/tmp/old/ferromq SERVERS="ferromq-base ferromq redis-always" scripts/compare.sh
#
# Output: target/compare/<date>/runs.jsonl (one JSON report per run) and summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
MESSAGES=${MESSAGES:-200000}          # per run, for push / drain / mixed
SLOW_MESSAGES=${SLOW_MESSAGES:-20000} # for servers that fsync every write
HOLD=${HOLD:-1000000}                 # messages held for the memory measurement
BACKLOG=${BACKLOG:-20000000}          # the large backlog of the backlog workload
SERVERS=${SERVERS:-"ferromq beanstalkd-mem beanstalkd-binlog50 beanstalkd-fsync redis-everysec redis-always"}
WORKLOADS=${WORKLOADS:-"saturated everyday hold"}
EVERYDAY_SECONDS=${EVERYDAY_SECONDS:-15}
PORT=${PORT:-17600}
ADDR=127.0.0.1:$PORT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need beanstalkd || ! need redis-server; then
    echo "== installing beanstalkd and redis-server (Debian packages)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq beanstalkd redis-server >/dev/null
fi
# The Debian packages start system services; stop them so nothing else competes.
for svc in beanstalkd redis-server; do
    (systemctl stop "$svc" 2>/dev/null || service "$svc" stop 2>/dev/null) >/dev/null 2>&1 || true
done

echo "== building ferromq and ferromq-bench (release)"
cargo build --release -q --workspace
BIN=target/release/ferromq
BENCH=target/release/ferromq-bench
BASE_BIN=${BASE_BIN:-}
case " $SERVERS " in
    *" ferromq-base "*) [ -x "$BASE_BIN" ] || { echo "ferromq-base needs BASE_BIN=path/to/ferromq" >&2; exit 2; } ;;
esac
# The binary that serves as `server` (ferromq or ferromq-base).
bin_of() { if [ "$1" = ferromq-base ]; then echo "$BASE_BIN"; else echo "$BIN"; fi; }
is_ferromq() { case $1 in ferromq|ferromq-base) return 0 ;; *) return 1 ;; esac; }

OUT=target/compare/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
RUNS_FILE=$OUT/runs.jsonl
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "server on port $PORT did not start" >&2
    return 1
}

start_server() { # name
    local dir=$WORK/$1
    rm -rf "$dir"; mkdir -p "$dir"
    case $1 in
        ferromq|ferromq-base) "$(bin_of "$1")" serve --listen "$ADDR" --data-dir "$dir" 2>"$dir.log" >/dev/null & ;;
        beanstalkd-mem)     beanstalkd -l 127.0.0.1 -p "$PORT" & ;;
        beanstalkd-binlog50) beanstalkd -l 127.0.0.1 -p "$PORT" -b "$dir" -f 50 & ;;
        beanstalkd-fsync)   beanstalkd -l 127.0.0.1 -p "$PORT" -b "$dir" -f 0 & ;;
        redis-everysec|redis-always)
            redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly yes \
                --appendfsync "${1#redis-}" --dir "$dir" --daemonize no >"$dir.log" & ;;
        *) echo "unknown server $1" >&2; exit 2 ;;
    esac
    SERVER_PID=$!
    wait_port
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

target_of() { case $1 in ferromq*) echo ferromq ;; beanstalkd*) echo beanstalkd ;; redis*) echo redis ;; esac; }

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

bench() { # server workload-label run args...
    local server=$1 label=$2 run=$3; shift 3
    local json
    json=$("$BENCH" --target "$(target_of "$server")" --addr "$ADDR" --server-pid "$SERVER_PID" \
        --json --max-time 120s "$@")
    echo "$json" | python3 -c '
import json, sys
r = json.load(sys.stdin); r["server_name"], r["workload_label"], r["run"] = sys.argv[1:4]
r.pop("timeline", None); print(json.dumps(r))
print("   %s %s run %s: %.0f msg/s, e2e p99 %.2f ms" % (sys.argv[1], sys.argv[2], sys.argv[3],
      r["throughput_msgs_per_s"], r["e2e_latency_ms"]["p99"]), file=sys.stderr)' \
        "$server" "$label" "$run" >>"$RUNS_FILE"
}

wants() { case " $WORKLOADS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if wants everyday; then
    echo "== raw 4 KiB append + fdatasync at 1,000/s (the floor under a durable ack)"
    for run in $(seq 1 "$RUNS"); do
        python3 scripts/fsync_probe.py "$WORK" 1000 "$EVERYDAY_SECONDS" | python3 -c '
import json, sys
r = json.load(sys.stdin); r["server_name"], r["workload_label"], r["run"] = "raw-fdatasync", "fsync_probe", sys.argv[1]
print(json.dumps(r))
print("   raw append+fdatasync run %s: p50 %.3f ms, %.0f CPU us per op" % (sys.argv[1], r["p50_ms"], r["cpu_us_per_op"]), file=sys.stderr)' "$run" >>"$RUNS_FILE"
    done
fi

for server in $SERVERS; do
    echo "== $server"
    n=$MESSAGES
    [ "$server" = beanstalkd-fsync ] && n=$SLOW_MESSAGES
    for run in $(seq 1 "$RUNS"); do
        start_server "$server"
        sleep 1
        echo "{\"server_name\":\"$server\",\"workload_label\":\"idle_rss\",\"run\":\"$run\",\"rss_kib\":$(rss_kib "$SERVER_PID")}" >>"$RUNS_FILE"
        if wants saturated; then
            bench "$server" mixed "$run" --workload mixed --producers 4 --consumers 4 --depth 32 --messages "$n"
            bench "$server" drain "$run" --workload drain --consumers 4 --depth 32 --messages "$n"
            bench "$server" push "$run" --workload push --producers 4 --depth 32 --messages "$n"
            bench "$server" latency5k "$run" --workload mixed --rate 5000 --duration 10s \
                --producers 1 --consumers 1 --depth 64
            if is_ferromq "$server"; then
                bench "$server" mixed_batch100 "$run" --workload mixed --producers 4 --consumers 4 \
                    --depth 8 --batch 100 --messages $((n * 5))
            fi
        fi
        if wants everyday; then
            # One request in flight per connection at 1,000 msg/s; at 5,000 msg/s a
            # connection with one request in flight could not keep up with any server
            # that fsyncs before answering (one fsync is 0.3-0.5 ms here), so 8.
            bench "$server" everyday1000 "$run" --workload mixed --rate 1000 \
                --duration "${EVERYDAY_SECONDS}s" --messages 100000000 \
                --producers 1 --consumers 1 --depth 1
            bench "$server" everyday5000 "$run" --workload mixed --rate 5000 \
                --duration "${EVERYDAY_SECONDS}s" --messages 100000000 \
                --producers 1 --consumers 1 --depth 8
        fi
        stop_server
    done
    # Memory holding HOLD messages of 100 B (skipped where pushing them takes minutes).
    if [ "$server" != beanstalkd-fsync ] && wants hold; then
        start_server "$server"
        "$BENCH" --target "$(target_of "$server")" --addr "$ADDR" --workload push --quiet \
            --producers 4 --depth 8 --batch 100 --messages "$HOLD" --queue-prefix hold \
            --max-time 300s >/dev/null
        sleep 2
        echo "{\"server_name\":\"$server\",\"workload_label\":\"hold_rss\",\"run\":\"1\",\"messages\":$HOLD,\"rss_kib\":$(rss_kib "$SERVER_PID")}" >>"$RUNS_FILE"
        if is_ferromq "$server"; then
            # Restart with HOLD messages on disk: time from exec to the first reserve.
            stop_server
            t0=$(date +%s%N)
            "$(bin_of "$server")" serve --listen "$ADDR" --data-dir "$WORK/$server" 2>>"$WORK/$server.log" >/dev/null &
            SERVER_PID=$!
            until "$BIN" reserve --addr "$ADDR" hold-0 >/dev/null 2>&1; do
                sleep 0.01
                [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 60000 ] && { echo "restart timed out" >&2; break; }
            done
            t1=$(date +%s%N)
            echo "{\"server_name\":\"$server\",\"workload_label\":\"restart_first_reserve\",\"run\":\"1\",\"messages\":$HOLD,\"ms\":$(( (t1 - t0) / 1000000 )),\"rss_kib\":$(rss_kib "$SERVER_PID")}" >>"$RUNS_FILE"
        fi
        stop_server
    fi
done

if wants backlog; then
    echo "== ferromq backlog ($HOLD and $BACKLOG messages held)"
    for held in "$HOLD" "$BACKLOG"; do
        start_server ferromq
        "$BENCH" --addr "$ADDR" --workload push --quiet --producers 4 --depth 8 --batch 100 \
            --messages "$held" --queue-prefix hold --max-time 600s >/dev/null
        sleep 11 # one trim period (src/memory.rs)
        echo "{\"server_name\":\"ferromq\",\"workload_label\":\"backlog_rss\",\"run\":\"$held\",\"messages\":$held,\"rss_kib\":$(rss_kib "$SERVER_PID")}" >>"$RUNS_FILE"
        bench ferromq backlog_push "$held" --workload push --producers 4 --depth 8 --batch 100 \
            --messages 1000000 --queue-prefix hold
        bench ferromq backlog_drain "$held" --workload drain --producers 4 --consumers 4 \
            --depth 8 --batch 100 --messages 1000000 --queue-prefix hold --keep-queues
        stop_server
        t0=$(date +%s%N)
        "$BIN" serve --listen "$ADDR" --data-dir "$WORK/ferromq" 2>>"$WORK/ferromq.log" >/dev/null &
        SERVER_PID=$!
        until "$BIN" reserve --addr "$ADDR" hold-0 >/dev/null 2>&1; do sleep 0.01; done
        echo "{\"server_name\":\"ferromq\",\"workload_label\":\"backlog_restart\",\"run\":\"$held\",\"messages\":$held,\"ms\":$(( ($(date +%s%N) - t0) / 1000000 )),\"rss_kib\":$(rss_kib "$SERVER_PID")}" >>"$RUNS_FILE"
        stop_server
    done
fi

python3 scripts/summarize.py "$RUNS_FILE" | tee "$OUT/summary.md"
echo "runs: $RUNS_FILE"
