#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine,
# then runs every check. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n== %s\n' "$*"; }

# apt_install PKG...: Debian packages, through sudo unless we are root.
apt_install() {
  log "installing $*"
  local sudo=(); [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# Debian packages the tests use: dig for the DNS checks, chromium for the
# dashboard's browser test.
need=()
command -v dig >/dev/null || need+=(dnsutils)
command -v chromium >/dev/null || need+=(chromium)
command -v dnsperf >/dev/null || need+=(dnsperf) # the DNS flood measurement
((${#need[@]} == 0)) || apt_install "${need[@]}"

log "go mod download"
go mod download

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $unformatted ]]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

log "go vet"
go vet ./...

# ---- hardening: h2spec (cmd/verge TestH2spec runs it against verge edge over TLS) ----
# Built from the Go module proxy into a temporary GOBIN, never committed.
log "h2spec v2.2.1"
h2spec_bin=$(mktemp -d)
GOBIN="$h2spec_bin" GOFLAGS= go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
export VERGE_H2SPEC="$h2spec_bin/h2spec"
# ---- end hardening: h2spec ----

log "go test -race"
go test -race -count=1 -timeout 30m ./...
rm -rf "$h2spec_bin"

# ---- hardening: floods, slow clients, zero-downtime operations, DNS (figures) ----
# A built verge process under HTTP/2 floods and 2,000 slowloris sockets; 20
# reloads and 3 binary upgrades under steady load; dnsperf's NXDOMAIN flood
# and the DNS amplification factor. Loopback only, bounded; about 3 minutes.
log "hardening measurements"
hard_log=$(mktemp)
if ! VERGE_HARDENING=1 go test -race -count=1 -timeout 15m -v \
    -run 'TestHTTP2Floods|TestStockHTTP2FloodFigures|TestSlowlorisBystander|TestZeroDowntimeReloadsAndUpgrades|TestUpgradeHubAndOrigin|TestUpgradeWithDiskCacheAndPurgeLog|TestUpgradeFailingAfterRelease|TestIdleHeaderReadsAreClosed' \
    ./cmd/verge >"$hard_log" 2>&1 ||
  ! VERGE_HARDENING=1 go test -race -count=1 -timeout 5m -v \
    -run 'TestAmplificationFactor|TestNXDomainFloodLegitimateAnswered' ./dnsredirect >>"$hard_log" 2>&1; then
  cat "$hard_log"; rm -f "$hard_log"; exit 1
fi
grep -E 'FIGURE|^(--- |ok )' "$hard_log" | sed 's/^ *//'
rm -f "$hard_log"
# ---- end hardening: floods, slow clients, zero-downtime operations, DNS ----

# ---- hardening: fuzzing (fuzz.sh: 8 targets x VERGE_FUZZTIME, 60s by default) ----
log "fuzz"
./fuzz.sh
# ---- end hardening: fuzzing ----

# The compose smoke test (deploy/smoke.sh): the image, all the nodes as
# containers, dig/curl/purge/failover from this host, then teardown.
if docker info >/dev/null 2>&1; then
  missing=()
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v curl >/dev/null || missing+=(curl)
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
  log "compose smoke test"
  deploy/smoke.sh
else
  log "skipping the compose smoke test: no Docker engine"
fi

log "all checks passed"
