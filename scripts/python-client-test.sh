#!/usr/bin/env bash
# Runs the official IronMQ Python client (PyPI iron-mq 0.9) against ferromq's HTTP API,
# and checks /metrics with the Prometheus Python client's parser (tests/python/test_metrics.py):
# a virtualenv with the client, a server on a free 127.0.0.1 port with a temporary data
# directory, then tests/python/test_iron_mq_client.py. CI runs this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=target/python-venv
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "iron-mq==0.9" "prometheus-client==0.21.1"

cargo build --quiet --bin ferromq
BIN=target/debug/ferromq
DIR=$(mktemp -d)
TOKEN=ci-token
# Port 0 for both listeners; the server prints the addresses it got.
# --push-allow: the push-queue tests' subscriber runs on 127.0.0.1, which the
# default subscriber policy denies.
"$BIN" serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --token "$TOKEN" \
    --push-allow 127.0.0.1 --metrics-listen 127.0.0.1:0 \
    --data-dir "$DIR/data" >"$DIR/out" 2>"$DIR/err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 200); do
    grep -q '^ferromq metrics listening on' "$DIR/out" 2>/dev/null && break
    kill -0 $PID 2>/dev/null || { cat "$DIR/err" >&2; exit 1; }
    sleep 0.05
done
ADDR=$(sed -n 's/^ferromq http listening on //p' "$DIR/out")
[ -n "$ADDR" ] || { echo "the server did not report its HTTP address" >&2; cat "$DIR/err" >&2; exit 1; }
METRICS=$(sed -n 's/^ferromq metrics listening on //p' "$DIR/out")
export FERROMQ_HTTP_HOST=${ADDR%:*} FERROMQ_HTTP_PORT=${ADDR##*:} FERROMQ_TOKEN=$TOKEN
export FERROMQ_METRICS_PORT=${METRICS##*:}
"$VENV/bin/python" tests/python/test_iron_mq_client.py
# /metrics, parsed by the Prometheus Python client's OpenMetrics parser.
"$VENV/bin/python" tests/python/test_metrics.py
