#!/bin/bash
# the tlsrelay bench series of 2026-11-23 (issue 8)
# Run as root, after the rig's setup (../shared/bench/README.md) and
# go build -o /tmp/tlsrelay-bench . ; figures in docs/benchmarks.md.
cd "${BENCH_DIR:-$(dirname "$0")/../../shared/bench}"
export RESULTS=/tmp/tlsrelay-bench.csv
T() { # tlsrelay through cmd.sh: upstream n size c rep [LOADGEN]
  local up=$1 tmpl=${TLSRELAY_DIR:-/work/main}/bench/tlsrelay.yaml.tmpl
  [ "$up" = starttls-auth ] || tmpl=${TLSRELAY_DIR:-/work/main}/bench/tlsrelay-noauth.yaml.tmpl
  echo "$(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') tlsrelay $*" >> /tmp/series-load.log
  RELAY_NAME=tlsrelay RELAY_CONFIG_TEMPLATE=$tmpl \
  RELAY_CMD='/tmp/tlsrelay-bench serve -config "$BENCH_CONFIG" 2>"$BENCH_RUN/tlsrelay.log"' \
  RELAY_VERSION_CMD='/tmp/tlsrelay-bench version' RELAY_DURABLE='yes (spool fsynced before 250)' \
  ./run-one.sh cmd "$@"
}
P() { echo "$(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') $*" >> /tmp/series-load.log; ./run-one.sh "$@"; }
for rep in 1 2 3; do
  T starttls-auth 2000 4k 20 $rep
  T plain 2000 4k 20 $rep
  P postfix starttls-auth 2000 4k 20 $rep
  P postfix plain 2000 4k 20 $rep
  P direct starttls 2000 4k 20 $rep
  P direct plain 2000 4k 20 $rep
  LOADGEN=smtplat T starttls-auth 200 4k 1 $rep
  LOADGEN=smtplat P postfix starttls-auth 200 4k 1 $rep
  LOADGEN=smtplat T plain 200 4k 1 $rep
  LOADGEN=smtplat P postfix plain 200 4k 1 $rep
  T starttls-auth 20 10m 4 $rep
done
echo SERIES DONE >> /tmp/series-load.log
