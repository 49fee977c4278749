#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for SECONDS each (default 60), on nightly
# Rust with cargo-fuzz (both installed if missing; needs rustup). New inputs go to
# target/fuzz-corpus/<target> (the seeds in fuzz/corpus/ stay as they are); a
# crash leaves its input in fuzz/artifacts/<target>/ and fails the script.
#
#   scripts/fuzz.sh          # 60 s per target, as CI runs it
#   scripts/fuzz.sh 3600     # an hour per target
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
for target in frames request http; do
    mkdir -p "target/fuzz-corpus/$target"
    echo "== fuzz $target for ${SECONDS_EACH}s"
    (cd fuzz && cargo +nightly fuzz run "$target" "../target/fuzz-corpus/$target" "corpus/$target" \
        -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 2>&1 | tail -n 3)
done
