#!/usr/bin/env bash
# Imports point down the layers only:
#   chunk <- repo <- index <- agent <- scheduler <- cmd; bench may use all
#   but cmd. Nothing imports cmd; only cmd imports bench (for `cairn bench`).
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
allowed() { # package-layer imported-layer
  case "$1:$2" in
    chunk:chunk|repo:chunk|repo:repo|index:chunk|index:repo|index:index) return 0;;
    agent:chunk|agent:repo|agent:index|agent:agent) return 0;;
    scheduler:chunk|scheduler:repo|scheduler:index|scheduler:agent|scheduler:scheduler) return 0;;
    cmd:*) return 0;;
    bench:*) [[ $2 != cmd ]] && return 0;;
  esac
  return 1
}
fail=0
while read -r pkg imports; do
  from=${pkg#"$mod"/}; from=${from%%/*}
  for imp in $imports; do
    [[ $imp == "$mod"/* ]] || continue
    to=${imp#"$mod"/}; to=${to%%/*}
    if ! allowed "$from" "$to"; then
      echo "layering: $pkg imports $imp" >&2; fail=1
    fi
  done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)
exit $fail
