#!/usr/bin/env bash
# The web dashboard in a real browser (tests/python/test_dashboard.py): headless
# Chromium (Debian's `chromium` and `chromium-driver`, installed here with apt when
# missing) driven by Selenium from the Python virtualenv of python-client-test.sh,
# against a server started with --dashboard on a free 127.0.0.1 port. Screenshots
# go to target/dashboard-screenshots/. CI runs this script.
#
# When the browser cannot be installed (no apt, not root, no route to the archive)
# the script says so and exits 0: the dashboard's API is also tested without a
# browser in `cargo test` (tests/it/dashboard.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
        && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >/tmp/ferromq-chromium-install.log 2>&1; then
        echo "installed chromium and chromium-driver"
    else
        echo "SKIPPED: the browser tests need Debian's chromium and chromium-driver, which cannot be installed here (root and apt are needed; log: /tmp/ferromq-chromium-install.log)"
        exit 0
    fi
fi
PYTHON=${PYTHON:-python3}
VENV=target/python-venv
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "selenium==4.27.1" "requests==2.32.3"

cargo build --quiet --bin ferromq
BIN=target/debug/ferromq
DIR=$(mktemp -d)
TOKEN=dashboard-token
PROJECT_TOKEN=project-token
"$BIN" serve --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --dashboard \
    --token "$TOKEN" --token "$PROJECT_TOKEN=proj1" --push-allow 127.0.0.1 \
    --data-dir "$DIR/data" >"$DIR/out" 2>"$DIR/err" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 200); do
    grep -q '^ferromq http listening on' "$DIR/out" 2>/dev/null && break
    kill -0 $PID 2>/dev/null || { cat "$DIR/err" >&2; exit 1; }
    sleep 0.05
done
ADDR=$(sed -n 's/^ferromq http listening on //p' "$DIR/out")
[ -n "$ADDR" ] || { echo "the server did not report its HTTP address" >&2; cat "$DIR/err" >&2; exit 1; }
export FERROMQ_HTTP_HOST=${ADDR%:*} FERROMQ_HTTP_PORT=${ADDR##*:}
export FERROMQ_TOKEN=$TOKEN FERROMQ_PROJECT_TOKEN=$PROJECT_TOKEN
export FERROMQ_SCREENSHOTS=${FERROMQ_SCREENSHOTS:-target/dashboard-screenshots}
export CHROMIUM CHROMEDRIVER
"$VENV/bin/python" tests/python/test_dashboard.py
echo "screenshots: $FERROMQ_SCREENSHOTS/overview.png $FERROMQ_SCREENSHOTS/queue.png"
