# Sourced by the scripts that build a pinned tool into .tools/bin (ignored
# by git) once per version: minio.sh, kopia.sh.

# tool_init NAME VERSION sets bin and stamp; if that version is built it
# prints the binary's path and exits.
tool_init() {
  bin=$PWD/.tools/bin/$1
  stamp=$PWD/.tools/bin/$1.version
  tool_version=$2
  if [[ -x $bin && -f $stamp && $(cat "$stamp") == "$tool_version" ]]; then
    echo "$bin"; exit 0
  fi
  mkdir -p .tools/bin
}

# tool_done records the version built and prints the binary's path.
tool_done() {
  echo "$tool_version" > "$stamp"
  echo "$bin"
}
