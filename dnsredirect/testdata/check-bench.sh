#!/usr/bin/env bash
# Build verge, serve configs/dns-bench.yaml on 127.0.0.1:5304 and run the
# GeoDNS bench's dig checks (check.sh) against it; then stop it with SIGTERM
# and require a clean exit (status 0).
#   dnsredirect/testdata/check-bench.sh [BENCH_DIR]   (default ../shared/bench/dns)
# Needs go and dig (Debian: dnsutils). Sends nothing beyond 127.0.0.1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${1:-${VERGE_DNS_BENCH:-$ROOT/../shared/bench/dns}}
command -v dig >/dev/null || { echo "check-bench: dig not found (apt-get install -y dnsutils)" >&2; exit 2; }
[ -x "$BENCH/check.sh" ] || [ -f "$BENCH/check.sh" ] || { echo "check-bench: no check.sh in $BENCH" >&2; exit 2; }

TMP=$(mktemp -d)
(cd "$ROOT" && go build -o "$TMP/verge" ./cmd/verge)
"$TMP/verge" dns -config "$ROOT/configs/dns-bench.yaml" >"$TMP/dns.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

for _ in $(seq 50); do
  dig @127.0.0.1 -p 5304 +tries=1 +time=1 +short cdn.example.test SOA >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || { echo "check-bench: verge dns exited:"; cat "$TMP/dns.log"; exit 1; }
  sleep 0.1
done

status=0
bash "$BENCH/check.sh" 127.0.0.1 5304 || status=$?

kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
if [ "$rc" -ne 0 ]; then echo "check-bench: verge dns exited $rc after SIGTERM:"; cat "$TMP/dns.log"; exit 1; fi
echo "check-bench: verge dns stopped cleanly"
exit "$status"
