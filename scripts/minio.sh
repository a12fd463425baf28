#!/usr/bin/env bash
# Builds the MinIO server used by the tests from the Go module proxy, once,
# into .tools/bin (ignored by git). Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned so every machine tests against the same server.
MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
. scripts/tools-lib.sh
tool_init minio "$MINIO_VERSION"
echo "building MinIO $MINIO_VERSION from the Go module proxy (a few minutes, once)..." >&2
# Built in a throwaway module so MinIO's dependencies never touch ours.
GOBIN=$PWD/.tools/bin CGO_ENABLED=0 GOFLAGS=-mod=mod go install "github.com/minio/minio@$MINIO_VERSION" >&2
tool_done
