#!/bin/bash
# The scale curve behind docs/benchmarks.md (issue 17): 4 KiB messages to the
# rig's plain upstream at 1, 20, 100 and 500 concurrent sessions, for
# tlsrelay, decke/smtprelay and Postfix, repetitions as the outer loop. The
# load is `tlsrelay bench` behind scripts/smtp-source-shim, so every point
# also has the end-of-DATA -> 250 latency of each message (same generator for
# every relay). Run as root after the rig's setup (../shared/bench/README.md,
# including tools/get-smtprelay.sh) and, from the repository root,
#   go build -ldflags "-X main.version=$(git rev-parse --short HEAD)" -o "${TMPDIR:-/tmp}/tlsrelay-bench" .
# Then: python3 scripts/plot-scale.py "$SCALE_DIR" docs/scale.svg
#
# tlsrelay runs bench/tlsrelay-noauth.yaml.tmpl with listen.max_connections
# and max_connections_per_ip raised to 1000 (the defaults, 100, refuse the
# 500-session point with 421 by design); smtprelay runs with the rig's
# -max_connections 1000; Postfix with its defaults (smtpd process limit 100:
# further sessions wait in the listen backlog).
#
# Environment: BENCH_DIR (the rig), TLSRELAY_BIN, SCALE_DIR (output: the
# rig's CSV as rig.csv and one JSON per point), SCALE_SESSIONS, SCALE_REPS,
# SCALE_RELAYS (a subset of "tlsrelay smtprelay postfix").
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=${TMPDIR:-/tmp}
export TLSRELAY_BIN=${TLSRELAY_BIN:-$TMP/tlsrelay-bench}
SCALE_DIR=${SCALE_DIR:-$TMP/tlsrelay-scale}
SESSIONS=${SCALE_SESSIONS:-1 20 100 500}
REPS=${SCALE_REPS:-1 2 3}
RELAYS=${SCALE_RELAYS:-tlsrelay smtprelay postfix}
[ -x "$TLSRELAY_BIN" ] || { echo "bench-scale: build $TLSRELAY_BIN first (see the header)" >&2; exit 2; }
mkdir -p "$SCALE_DIR" || exit 1
export RESULTS=$SCALE_DIR/rig.csv SMTP_SOURCE=$ROOT/scripts/smtp-source-shim
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cd "${BENCH_DIR:-$ROOT/../shared/bench}" || exit 1
TMPL=$(mktemp -d "$TMP/tlsrelay-scale-tmpl.XXXXXX") || exit 1
trap 'rm -rf "$TMPL"' EXIT
sed 's/^  max_message_bytes: .*/&\n  max_connections: 1000\n  max_connections_per_ip: 1000/' \
  "$ROOT/bench/tlsrelay-noauth.yaml.tmpl" >"$TMPL/tlsrelay-noauth.yaml.tmpl"
grep -q 'max_connections_per_ip: 1000' "$TMPL/tlsrelay-noauth.yaml.tmpl" || { echo "bench-scale: template edit failed" >&2; exit 1; }
# point RELAY C REP: one run of the rig; N grows with C so that every
# session sends at least 10 messages.
point() {
  local relay=$1 c=$2 rep=$3 n=$((c * 10 > 2000 ? c * 10 : 2000))
  export SMTPLOAD_JSON=$SCALE_DIR/$relay-c$c-r$rep.json
  echo "$(date -u +%H:%M:%S) $relay c=$c n=$n rep=$rep"
  if [ "$relay" = tlsrelay ]; then
    RELAY_NAME=tlsrelay RELAY_CONFIG_TEMPLATE=$TMPL/tlsrelay-noauth.yaml.tmpl \
    RELAY_CMD='"$TLSRELAY_BIN" serve -config "$BENCH_CONFIG" 2>"$BENCH_RUN/tlsrelay.log"' \
    RELAY_VERSION_CMD='"$TLSRELAY_BIN" version' RELAY_DURABLE='yes (spool fsynced before 250)' \
    RELAY_QUEUE_CMD='find "$BENCH_SPOOL/q" -name "*.json" | wc -l' \
    ./run-one.sh cmd plain "$n" 4k "$c" "$rep" >/dev/null
  else
    ./run-one.sh "$relay" plain "$n" 4k "$c" "$rep" >/dev/null
  fi
}
for rep in $REPS; do
  for c in $SESSIONS; do
    for relay in $RELAYS; do
      point "$relay" "$c" "$rep"
    done
  done
done
echo "$(date -u +%H:%M:%S) SCALE DONE: $SCALE_DIR"
