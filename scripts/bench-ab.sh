#!/bin/bash
# bench-ab.sh BEFORE_REV [AFTER_REV] [REPS]: the rig's 2000 x 4 KiB STARTTLS+AUTH
# scenario (20 sessions) for two builds of tlsrelay, interleaved in one
# series (before, after, before, after, ...), so that both see the same
# machine load. AFTER_REV defaults to the work tree. Run as root after the
# rig's setup (see the rig's README.md). Results: $RESULTS (CSV), then
#   python3 "$BENCH_DIR/tools/summarize.py" "$RESULTS"
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$ROOT/../shared/bench}
before=${1:?usage: bench-ab.sh BEFORE_REV [AFTER_REV] [REPS]} after=${2:-} reps=${3:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/tlsrelay-ab.XXXXXX")
export RESULTS=${RESULTS:-$work/ab.csv}
build() { # build REV OUT: the binary of REV ("" = the work tree)
  local src=$ROOT
  if [ -n "$1" ]; then
    src=$work/src-$1; mkdir -p "$src"
    git -C "$ROOT" archive "$1" | tar -x -C "$src"
  fi
  (cd "$src" && CGO_ENABLED=0 go build -ldflags "-X main.version=${1:-worktree}" -o "$2" .)
}
build "$before" "$work/before"
build "$after" "$work/after"
run() { # run NAME BIN
  RELAY_NAME=$1 RELAY_CONFIG_TEMPLATE=$ROOT/bench/tlsrelay.yaml.tmpl \
  RELAY_CMD="$2"' serve -config "$BENCH_CONFIG" 2>"$BENCH_RUN/tlsrelay.log"' \
  RELAY_VERSION_CMD="$2 version" RELAY_DURABLE='yes (spool fsynced before 250)' \
  RELAY_QUEUE_CMD='find "$BENCH_SPOOL/q" -name "*.json" | wc -l' \
  "$BENCH_DIR/run-one.sh" cmd starttls-auth 2000 4k 20 "$rep"
}
cd "$BENCH_DIR"
for rep in $(seq 1 "$reps"); do
  run tlsrelay-before "$work/before"
  run tlsrelay-after "$work/after"
done
echo "results: $RESULTS"
