#!/usr/bin/env bash
# Builds the image of packaging/docker/Dockerfile on a machine without a registry:
# its final stage as written, its build stage replaced by the static binary built
# here (`cargo release-static`), then runs it: without a token it refuses to
# start (it listens on 0.0.0.0), with one it serves and its HEALTHCHECK passes.
# Prints the image's size. Needs a running Docker daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo release-static
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"; docker rm -f ferromq-image-test >/dev/null 2>&1 || true' EXIT
mkdir -p "$CTX/out/data"
cp target/x86_64-unknown-linux-gnu/release/ferromq "$CTX/out/ferromq"
# The build stage becomes a copy of what was built here; the rest is the file as shipped.
awk 'BEGIN { skip = 0 }
     /^FROM rust/ { print "FROM scratch AS build"; print "COPY out /out"; skip = 1; next }
     skip && /^FROM / { skip = 0 }
     !skip { print }' packaging/docker/Dockerfile >"$CTX/Dockerfile"
docker build -q -t ferromq:test "$CTX" >/dev/null
echo "image size: $(docker image inspect ferromq:test --format '{{.Size}}') bytes"
if REFUSAL=$(docker run --rm ferromq:test 2>&1); then
    echo "docker-image: the image started without a token" >&2
    exit 1
fi
echo "$REFUSAL" | grep -q -- "--token" || { echo "docker-image: $REFUSAL" >&2; exit 1; }
echo "without a token: refused ($REFUSAL)"
docker run -d --name ferromq-image-test -e FERROMQ_TOKEN=s3cret ferromq:test >/dev/null
for _ in $(seq 1 60); do
    state=$(docker inspect ferromq-image-test --format '{{.State.Health.Status}}')
    [ "$state" = healthy ] && break
    sleep 1
done
echo "health: $state"
docker exec ferromq-image-test /ferromq stats --addr 127.0.0.1:7600 --token s3cret
[ "$state" = healthy ]
