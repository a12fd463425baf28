#!/usr/bin/env bash
# Usage: scripts/with-minio.sh COMMAND...
# Starts a MinIO server on a free loopback port with a throwaway data folder,
# runs COMMAND with CAIRN_TEST_S3_* pointing at it, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
minio=$(scripts/minio.sh)

free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port found" >&2; return 1
}

data=$(mktemp -d "${TMPDIR:-/tmp}/cairn-minio.XXXXXX")
port=$(free_port)
cport=$(free_port)
export MINIO_ROOT_USER=cairntest MINIO_ROOT_PASSWORD=cairntest-secret-key
export MINIO_BROWSER=off MINIO_UPDATE=off
"$minio" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$cport" "$data" \
  > "$data.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$data.log"; }
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/minio/health/live" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "MinIO failed to start:" >&2; cat "$data.log" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/minio/health/live" >/dev/null || { echo "MinIO did not become ready" >&2; cat "$data.log" >&2; exit 1; }
echo "MinIO on 127.0.0.1:$port" >&2

export CAIRN_TEST_S3_ENDPOINT=127.0.0.1:$port
export CAIRN_TEST_S3_ACCESS_KEY=$MINIO_ROOT_USER
export CAIRN_TEST_S3_SECRET_KEY=$MINIO_ROOT_PASSWORD
export CAIRN_TEST_REQUIRE_S3=1
"$@"
