#!/usr/bin/env bash
# make demo: a local repository in a temporary folder, a generated tree,
# two snapshots with a few changes between them, a restore compared with
# the source.
set -euo pipefail
bin=$(realpath "${1:-bin/cairn}")
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CAIRN_REPO=$work/repo CAIRN_STATE_DIR=$work/state CAIRN_PASSWORD=demo-password
src=$work/src

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "generate a sample tree in $src"
mkdir -p "$src"/{docs,src/pkg,data}
for i in $(seq 1 200); do printf 'line %d of file %d\n' $(seq 1 $((i * 5))) "$i" > "$src/docs/note-$i.txt"; done
for i in $(seq 1 50); do head -c $((i * 4096)) /dev/urandom > "$src/src/pkg/blob-$i.bin"; done
head -c $((24 << 20)) /dev/urandom > "$src/data/big.bin"
ln -s ../docs/note-1.txt "$src/src/readme-link"
du -sh "$src"
# Age the files so nothing counts as modified "just now" (racy mtimes).
find "$src" -exec touch -h -d '-1 hour' {} +

step "cairn init"
"$bin" init

step "first snapshot: everything is read and stored"
"$bin" snapshot "$src"

step "change a few files: edit two notes, append to the big file, add one, delete one"
echo "an edit" >> "$src/docs/note-3.txt"
echo "another" >> "$src/docs/note-150.txt"
head -c 100000 /dev/urandom >> "$src/data/big.bin"
echo "new file" > "$src/docs/new.txt"
rm "$src/src/pkg/blob-7.bin"

step "second snapshot: only the changed files are read, only new chunks stored"
"$bin" snapshot "$src"

step "history"
"$bin" snapshots

step "restore the latest snapshot and compare it with the source"
"$bin" restore latest --target "$work/restored"
diff -r --no-dereference "$src" "$work/restored"
echo "restored tree is identical to the source"

step "the first version of one file, as a tar.gz"
"$bin" restore "$(hostname):$src@2:/docs/note-3.txt" --tar "$work/note.tar.gz"
tar -tzvf "$work/note.tar.gz"

step "repository statistics"
"$bin" stats
