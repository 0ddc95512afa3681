#!/bin/bash
# The tlsrelay bench series behind docs/benchmarks.md (issue 8): tlsrelay
# beside Postfix, decke/smtprelay and no relay, same rig, same run,
# repetitions as the outer loop. Run as root after the rig's setup
# (../shared/bench/README.md, including tools/get-smtprelay.sh) and, from
# the repository root,
#   go build -ldflags "-X main.version=$(git rev-parse --short HEAD)" -o "${TMPDIR:-/tmp}/tlsrelay-bench" .
# Then: python3 ../shared/bench/tools/summarize.py "$RESULTS"
#
# Environment: BENCH_DIR (the rig; default ../shared/bench beside the
# repository), TLSRELAY_DIR (the repository; default this script's),
# TLSRELAY_BIN (the binary built above), RESULTS (CSV), LOADLOG.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=${TMPDIR:-/tmp}
export RESULTS=${RESULTS:-$TMP/tlsrelay-bench.csv}
export TLSRELAY_BIN=${TLSRELAY_BIN:-$TMP/tlsrelay-bench}
LOADLOG=${LOADLOG:-$TMP/series-load.log}
TDIR=${TLSRELAY_DIR:-$ROOT}
cd "${BENCH_DIR:-$ROOT/../shared/bench}" || exit 1
TMPL=$(mktemp -d "$TMP/tlsrelay-tmpl.XXXXXX") || exit 1
# The project's templates (max_connections 8), and the same with the
# provider default of 4, as tlsrelay-default.
for t in tlsrelay tlsrelay-noauth; do
  sed 's/^    max_connections: 8$/    max_connections: 4/' "$TDIR/bench/$t.yaml.tmpl" > "$TMPL/$t.yaml.tmpl"
done
log() { echo "$(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') $*" >> "$LOADLOG"; }
# T NAME TEMPLATE_DIR upstream n size c rep: tlsrelay through relays/cmd.sh
T() {
  local name=$1 dir=$2 up=$3; shift 3
  local tmpl=$dir/tlsrelay.yaml.tmpl
  [ "$up" = starttls-auth ] || tmpl=$dir/tlsrelay-noauth.yaml.tmpl
  log "$name $up $*"
  RELAY_NAME=$name RELAY_CONFIG_TEMPLATE=$tmpl \
  RELAY_CMD='"$TLSRELAY_BIN" serve -config "$BENCH_CONFIG" 2>"$BENCH_RUN/tlsrelay.log"' \
  RELAY_VERSION_CMD='"$TLSRELAY_BIN" version' RELAY_DURABLE='yes (spool fsynced before 250)' \
  RELAY_QUEUE_CMD='find "$BENCH_SPOOL/q" -name "*.json" | wc -l' \
  ./run-one.sh cmd "$up" "$@"
}
P() { log "$*"; ./run-one.sh "$@"; }
for rep in 1 2 3; do
  for up in starttls-auth plain; do
    T tlsrelay "$TDIR/bench" $up 2000 4k 20 $rep
    T tlsrelay-default "$TMPL" $up 2000 4k 20 $rep
    P postfix $up 2000 4k 20 $rep
    P smtprelay $up 2000 4k 20 $rep
  done
  P direct starttls 2000 4k 20 $rep
  P direct plain 2000 4k 20 $rep
  for up in starttls-auth plain; do
    LOADGEN=smtplat T tlsrelay "$TDIR/bench" $up 200 4k 1 $rep
    LOADGEN=smtplat P postfix $up 200 4k 1 $rep
    LOADGEN=smtplat P smtprelay $up 200 4k 1 $rep
  done
  T tlsrelay "$TDIR/bench" starttls-auth 20 10m 4 $rep
  P smtprelay starttls-auth 20 10m 4 $rep
done
rm -rf "$TMPL"
log "SERIES DONE"
