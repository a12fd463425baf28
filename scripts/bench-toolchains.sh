#!/usr/bin/env bash
# Usage: scripts/bench-toolchains.sh [cairn bench flags...]
# The issue's real-release data set: Go toolchains 1.24.0 ... 1.24.(N-1)
# (about 257 MB and 10,700 files each) fetched once from the Go module
# proxy into .tools/gotc, then `cairn bench` on them, each release the next
# version of the previous, on a local folder and on a MinIO server started
# for the run. VERSIONS (default 10) sets N; 2 skips the dedup run.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=${VERSIONS:-10}
cache=$PWD/.tools/gotc
dirs=()
for ((n = 0; n < versions; n++)); do
  mod=golang.org/toolchain@v0.0.1-go1.24.$n.linux-amd64
  dir=$cache/mod/$mod
  if [[ ! -d $dir ]]; then
    echo "fetching $mod (once)..." >&2
    (cd "$(mktemp -d)" && GOFLAGS=-mod=mod GOMODCACHE=$cache/mod go mod download "$mod")
  fi
  dirs+=("$dir")
done
args=(--dir "${dirs[0]}")
for d in "${dirs[@]:1}"; do args+=(--next-dir "$d"); done
if ((versions >= 10)); then args+=(--dedup); fi
make -s build
# Restores go to a tmpfs when there is one: on ext4 that has just freed the
# previous repetition's files, creating 10,700 files takes several times
# longer for every tool, and the figures would measure the disk.
if [[ -d /dev/shm && -w /dev/shm ]]; then args+=(--restore-dir /dev/shm/cairn-bench-restore); fi
# kopia is not packaged by Debian; build it once (restic: apt-get install restic).
if kopia=$(scripts/kopia.sh); then args+=(--kopia "$kopia"); else echo "note: kopia not built; measuring without it" >&2; fi
# shellcheck disable=SC2016
exec scripts/with-minio.sh sh -c 'AWS_ACCESS_KEY_ID=$CAIRN_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$CAIRN_TEST_S3_SECRET_KEY exec "$@" --s3 "$CAIRN_TEST_S3_ENDPOINT"' \
  sh bin/cairn bench "${args[@]}" "$@"
