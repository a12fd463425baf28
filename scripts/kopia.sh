#!/usr/bin/env bash
# Builds kopia, a peer for `cairn bench`, from the Go module proxy, once,
# into .tools/bin (ignored by git). Prints the binary's path.
# `go install kopia@version` fails here because the proxy refuses to list
# kopia's versions (it serves the pinned one), so the module is downloaded
# and built in place with its own go.mod and go.sum.
set -euo pipefail
cd "$(dirname "$0")/.."
KOPIA_VERSION=${KOPIA_VERSION:-v0.21.1}
. scripts/tools-lib.sh
tool_init kopia "$KOPIA_VERSION"
echo "building kopia $KOPIA_VERSION from the Go module proxy (a few minutes, once)..." >&2
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
zip=$(cd "$work" && go mod download -json "github.com/kopia/kopia@$KOPIA_VERSION" | sed -n 's/^[[:space:]]*"Zip": "\(.*\)",$/\1/p')
[[ -n $zip ]] || { echo "kopia $KOPIA_VERSION: the module proxy did not serve it" >&2; exit 1; }
(cd "$work" && unzip -q "$zip")
(cd "$work/github.com/kopia/kopia@$KOPIA_VERSION" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$bin" . >&2)
tool_done
