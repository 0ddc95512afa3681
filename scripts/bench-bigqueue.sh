#!/bin/bash
# The "100,000 queued messages" measurement of docs/benchmarks.md (issues 8
# and 17): fill a spool with scripts/mkspool, start `tlsrelay serve` on it
# with a provider rate-limited to 1/h (so that no delivery mixes in), and
# report start -> ready (`tlsrelay health` exit 0, polled every 50 ms),
# start -> "spool loaded" (every message in the in-memory queue), RSS then,
# three timed `tlsrelay queue list -json`, and VmHWM after them. With
# COLD=1 (root) the page cache is dropped before the start.
#
#   go build -o /tmp/tlsrelay-bench . && scripts/bench-bigqueue.sh [N]
#
# Environment: TLSRELAY_BIN (default ${TMPDIR:-/tmp}/tlsrelay-bench), COLD,
# KEEP_SPOOL (a spool from an earlier run to reuse: the fill is skipped).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TLSRELAY_BIN:-${TMPDIR:-/tmp}/tlsrelay-bench}
N=${1:-100000}
[ -x "$BIN" ] || { echo "bench-bigqueue: build $BIN first" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/bigqueue.XXXXXX")
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
spool=${KEEP_SPOOL:-$W/spool}
if [ -z "${KEEP_SPOOL:-}" ]; then
  (cd "$ROOT" && go run ./scripts/mkspool -dir "$spool" -n "$N" -size 4096 -provider sink)
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cat >"$W/relay.yaml" <<YAML
listen: {addr: 127.0.0.1:$(port)}
queue: {dir: $spool}
providers:
  sink:
    host: 127.0.0.1
    port: $(port)
    rate: 1/h
    tls: {mode: none}
default: [sink]
log: {format: text, level: info}
YAML
if [ "${COLD:-0}" = 1 ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi
t0=$EPOCHREALTIME
"$BIN" serve -config "$W/relay.yaml" 2>"$W/relay.log" &
pid=$!
ready=
for _ in $(seq 1 1200); do # 60 s
  if "$BIN" health -config "$W/relay.yaml" >/dev/null 2>&1; then ready=$EPOCHREALTIME; break; fi
  sleep 0.05
done
[ -n "$ready" ] || { echo "bench-bigqueue: not ready after 60 s; log:" >&2; tail -5 "$W/relay.log" >&2; exit 1; }
loaded=
for _ in $(seq 1 2400); do # 120 s
  if grep -q 'spool loaded' "$W/relay.log"; then loaded=$EPOCHREALTIME; break; fi
  sleep 0.05
done
[ -n "$loaded" ] || { echo "bench-bigqueue: no 'spool loaded' after 120 s" >&2; exit 1; }
rss=$(awk '/^VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
lists=
for _ in 1 2 3; do
  a=$EPOCHREALTIME
  "$BIN" queue list -config "$W/relay.yaml" -json >"$W/list.json"
  lists="$lists $(awk -v a="$a" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')"
done
hwm=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$pid/status")
listed=$(grep -o '"id"' "$W/list.json" | wc -l)
awk -v t0="$t0" -v r="$ready" -v l="$loaded" -v rss="$rss" -v hwm="$hwm" -v lists="$lists" \
  -v n="$N" -v listed="$listed" -v cold="${COLD:-0}" 'BEGIN {
  printf "n=%d cold=%s ready_s=%.2f loaded_s=%.2f rss_mib=%d list_s=%s hwm_mib=%d listed=%d\n",
    n, cold, r - t0, l - t0, rss, lists, hwm, listed }'
grep 'spool loaded' "$W/relay.log" | head -1
