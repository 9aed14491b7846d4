#!/usr/bin/env bash
# The compose smoke test: builds the static binary and the image (no base
# image, no registry), brings the whole topology up under a project name of
# its own, tests it from this host, and always tears it down.
#
#   deploy/smoke.sh                # exit 0: every check passed
#
# What it checks, from the host (its address on each compose network,
# 172.28.1.1 or 172.28.2.1, is the client address GeoDNS locates):
#   - dig against the dns container answers the client's region's edges,
#     by source address and by EDNS Client Subnet, over UDP and TCP;
#   - curl through that edge returns the origin's bytes, with Cache-Status
#     showing the hops (hub, then edge) on a miss and the edge on a hit;
#   - an object published with the origin's upload API is served unchanged;
#   - the scrubber forwards to the edges;
#   - a purge through management's API (verge purge) is acknowledged by all
#     six caches, every node's purge log reaches the same sequence number,
#     and the purged object is fetched again at every tier;
#   - the purge propagation time (API call to the last node's ack) over
#     SMOKE_PURGES purges;
#   - with hub-eu stopped: a cached object is still a hit, objects cached
#     nowhere on that path come from the origin; a purge sent meanwhile is
#     replayed by hub-eu when it comes back, before it is healthy;
#   - with edge-eu-2 stopped, GeoDNS stops answering it, and takes it back;
#   - every node reported to management, and no container restarted.
#
# Traffic goes only to the containers this script starts: it refuses to run
# when the 172.28.0-2.0/24 subnets are already in use. Every wait is bounded,
# and the whole run by SMOKE_TIMEOUT seconds (default 600).
#
# Environment: SMOKE_TIMEOUT (600), SMOKE_PURGES (20), SMOKE_KEEP=1 keeps
# the topology up after the checks (you then remove it yourself with the
# printed command).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
compose_file=$here/compose/docker-compose.yml
limit=${SMOKE_TIMEOUT:-600}
purges=${SMOKE_PURGES:-20}
start=$(date +%s)

project=verge-smoke-$(date +%Y%m%d%H%M%S)-$$
image=verge-smoke:$project
tmp=$(mktemp -d /tmp/verge-smoke.XXXXXX)
export COMPOSE_PROJECT_NAME=$project VERGE_IMAGE=$image VERGE_RUN_DIR=$tmp/run
verge=$root/deploy/build/verge

host=www.demo.test
eu_edges="172.28.1.11 172.28.1.12"
us_edges="172.28.2.11 172.28.2.12"
manage=http://172.28.0.20:9300
origin=http://172.28.0.10:8070

results=()   # "PASS|FAIL name: detail"
figures=()
failed=0
brought_up=0

log() { printf '%s [%3ds] %s\n' "$(date +%H:%M:%S)" $(($(date +%s) - start)) "$*"; }
pass() { results+=("PASS  $1: $2"); log "PASS $1: $2"; }
fail() { results+=("FAIL  $1: $2"); log "FAIL $1: $2"; failed=1; }
figure() { figures+=("$1"); log "figure: $1"; }
dc() { timeout 180 docker-compose -f "$compose_file" "$@"; }
# Requests go straight to the containers, never through a proxy from the
# environment.
curl() { command curl --noproxy '*' "$@"; }

summary() {
  echo
  echo "== compose smoke test summary ($project, $(($(date +%s) - start))s)"
  local r
  for r in "${results[@]}"; do echo "  $r"; done
  for r in "${figures[@]}"; do echo "  figure: $r"; done
  if ((failed)) || ((${#results[@]} == 0)); then
    echo "SMOKE TEST: FAIL"
  else
    echo "SMOKE TEST: PASS (${#results[@]} checks)"
  fi
}

# teardown always runs: containers, networks and volumes of this project,
# the image tag, the run directory.
teardown() {
  local rc=$?
  trap - EXIT INT TERM
  kill "$watchdog" 2>/dev/null
  if ((brought_up)); then
    if ((failed)); then
      echo; echo "== logs of the last 40 lines per node (a check failed)"
      dc logs --no-color --tail 40 2>&1 | tail -n 400
    fi
    if [[ ${SMOKE_KEEP:-0} == 1 ]]; then
      echo "SMOKE_KEEP=1: left up. Remove with:"
      echo "  COMPOSE_PROJECT_NAME=$project VERGE_RUN_DIR=$VERGE_RUN_DIR docker-compose -f $compose_file down -v && docker rmi $image && rm -rf $tmp"
      summary
      exit $((failed || rc))
    fi
    log "tearing down $project"
    dc down -v --remove-orphans -t 10 >/dev/null 2>&1 || dc down -v --remove-orphans -t 10
  fi
  local left
  left=$( {
    docker ps -aq --filter "label=com.docker.compose.project=$project"
    docker network ls -q --filter "label=com.docker.compose.project=$project"
    docker volume ls -q --filter "label=com.docker.compose.project=$project"
  } 2>/dev/null)
  if [[ -n $left ]]; then
    fail teardown "left behind: $(echo $left)"
  elif ((brought_up)); then
    pass teardown "no containers, networks or volumes of $project left"
  fi
  docker rmi "$image" >/dev/null 2>&1
  rm -rf "$tmp"
  summary
  ((failed || rc)) && exit 1
  exit 0
}
trap teardown EXIT
trap 'fail run "interrupted"; exit 1' INT TERM

# The watchdog bounds the whole run; teardown then still runs.
(
  trap 'kill $sp 2>/dev/null; exit 0' TERM
  sleep "$limit" & sp=$!
  wait $sp
  echo "smoke: the run exceeded SMOKE_TIMEOUT=${limit}s" >&2
  kill -TERM $$
) &
watchdog=$!

die() { fail "$1" "$2"; exit 1; }

# ---- preflight
for tool in docker docker-compose dig curl python3 go timeout; do
  command -v "$tool" >/dev/null || die preflight "$tool not found"
done
timeout 20 docker info >/dev/null 2>&1 || die preflight "no Docker engine answers (docker info failed)"
nets=$(docker network ls -q)
if [[ -n $nets ]]; then
  used=" $(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' $nets 2>/dev/null | tr '\n' ' ') "
  for s in 172.28.0.0/24 172.28.1.0/24 172.28.2.0/24; do
    [[ $used == *" $s "* ]] && die preflight "subnet $s is already used by a Docker network (another Verge compose run?); this test only talks to its own containers"
  done
fi
if command -v ip >/dev/null && ip -4 route show | grep -qE '^172\.28\.[0-2]\.'; then
  die preflight "this host already routes 172.28.0-2.x elsewhere: $(ip -4 route show | grep -E '^172\.28\.' | head -1)"
fi

# ---- build and bring up
log "building the binary and image $image"
if ! out=$(cd "$root" && timeout 600 deploy/build.sh "$image" 2>&1); then
  echo "$out"; die build "deploy/build.sh failed"
fi
pass build "$(echo "$out" | tail -1)"

log "bringing up $project"
brought_up=1
if ! out=$(timeout 240 "$here/compose/up.sh" 2>&1); then
  echo "$out"; die up "docker-compose up failed"
fi
services=(origin manage hub-eu hub-us edge-eu-1 edge-eu-2 edge-us-1 edge-us-2 scrubber dns)
cid() { dc ps -q "$1" 2>/dev/null; }
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$(cid "$1")" 2>/dev/null; }
wait_healthy() { # seconds service...
  local deadline=$(($(date +%s) + $1)) s pending; shift
  while :; do
    pending=()
    for s in "$@"; do [[ $(health "$s") == healthy ]] || pending+=("$s"); done
    ((${#pending[@]} == 0)) && return 0
    (($(date +%s) >= deadline)) && { echo "${pending[*]}"; return 1; }
    sleep 0.5
  done
}
t0=$(date +%s%N)
if ! pending=$(wait_healthy 120 "${services[@]}"); then
  die up "not healthy within 120s: $pending"
fi
geo_exit=$(docker inspect -f '{{.State.ExitCode}}' "$(cid geo)" 2>/dev/null)
[[ $geo_exit == 0 ]] || die up "the geo job (verge mmdb build) exited $geo_exit"
pass up "10 nodes healthy $((($(date +%s%N) - t0) / 1000000)) ms after docker-compose up returned; geo mmdb built by verge mmdb build"

cluster_token=$(cat "$VERGE_RUN_DIR/secrets/cluster.token")
operator_token=$(cat "$VERGE_RUN_DIR/secrets/operator.token")
upload_token=$(cat "$VERGE_RUN_DIR/secrets/upload.token")
site=$VERGE_RUN_DIR/site

# ---- helpers
# dig_a SERVER [dig options]: the A records, space separated.
dig_a() { local s=$1; shift; dig @"$s" "$host" A +short +time=2 +tries=2 "$@" 2>/dev/null | grep -E '^[0-9.]+$' | sort | tr '\n' ' ' | sed 's/ $//'; }
# in_set "ADDRS" "ALLOWED": every address is allowed, and there is one.
in_set() { local a; [[ -n $1 ]] || return 1; for a in $1; do [[ " $2 " == *" $a "* ]] || return 1; done; }
# fetch IP PATH: sets CODE, CS (Cache-Status entries joined by ", "), BODY
# (a file) and SECS.
fetch() {
  BODY=$tmp/body HDR=$tmp/hdr
  local w
  w=$(curl -sS -m 15 -o "$BODY" -D "$HDR" -w '%{http_code} %{time_total}' --resolve "$host:8080:$1" "http://$host:8080$2" 2>"$tmp/curl.err") || true
  CODE=${w%% *} SECS=${w##* }
  CS=$(grep -i '^cache-status:' "$HDR" 2>/dev/null | cut -d: -f2- | tr -d '\r' | sed 's/^ *//' | paste -sd, - | sed 's/,/, /g; s/  */ /g')
  [[ -n $CODE && $CODE != 000 ]] || CODE="000 ($(head -c 200 "$tmp/curl.err"))"
}
# api METHOD PATH [BODY]: management's operator API.
api() {
  local args=(-sS -m 10 -X "$1" -H "Authorization: Bearer $operator_token")
  [[ -n ${3:-} ]] && args+=(-H 'Content-Type: application/json' --data "$3")
  curl "${args[@]}" "$manage/api/v1$2"
}
# last_seq ADMIN_BASE: the sequence number of the newest purge in a node's log.
last_seq() { curl -sS -m 5 -H "Authorization: Bearer $cluster_token" "$1/purgelog/summary" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["last"])' 2>/dev/null; }
admins=(hub-eu=http://172.28.0.31:9080 hub-us=http://172.28.0.32:9080 edge-eu-1=http://172.28.0.41:9080 edge-eu-2=http://172.28.0.42:9080 edge-us-1=http://172.28.0.51:9080 edge-us-2=http://172.28.0.52:9080)
edge_name() { case $1 in 172.28.1.11) echo edge-eu-1;; 172.28.1.12) echo edge-eu-2;; 172.28.2.11) echo edge-us-1;; 172.28.2.12) echo edge-us-2;; esac; }
run_id=$$-$RANDOM

# ---- 1. GeoDNS
got=$(dig_a 172.28.1.53)
in_set "$got" "$eu_edges" && pass dns-eu "from 172.28.1.1: $got" || fail dns-eu "from 172.28.1.1 want eu edges ($eu_edges), got '$got'"
got=$(dig_a 172.28.2.53)
in_set "$got" "$us_edges" && pass dns-us "from 172.28.2.1: $got" || fail dns-us "from 172.28.2.1 want us edges ($us_edges), got '$got'"
got=$(dig_a 172.28.1.53 +subnet=172.28.2.0/24)
in_set "$got" "$us_edges" && pass dns-ecs-us "eu source, ECS 172.28.2.0/24: $got" || fail dns-ecs-us "want us edges, got '$got'"
got=$(dig_a 172.28.2.53 +subnet=172.28.1.0/24 +tcp)
in_set "$got" "$eu_edges" && pass dns-ecs-eu-tcp "us source, ECS 172.28.1.0/24, TCP: $got" || fail dns-ecs-eu-tcp "want eu edges, got '$got'"
eu_edge=$(dig_a 172.28.1.53 | cut -d' ' -f1); [[ -n $eu_edge ]] || eu_edge=172.28.1.11
us_edge=$(dig_a 172.28.2.53 | cut -d' ' -f1); [[ -n $us_edge ]] || us_edge=172.28.2.11

# ---- 2. curl through the edge DNS chose: miss through the hub, then a hit
check_path() { # NAME IP REGION PATH FILE
  local name=$1 ip=$2 region=$3 path=$4 file=$5 e
  e=$(edge_name "$ip")
  fetch "$ip" "$path"
  if [[ $CODE != 200 ]] || ! cmp -s "$BODY" "$file"; then
    fail "$name" "GET $path via $e: $CODE, body $(wc -c <"$BODY" 2>/dev/null) bytes, want the origin's $(wc -c <"$file") bytes"
  elif [[ $CS != *"hub-$region; fwd=uri-miss"*"$e; fwd=uri-miss"* ]]; then
    fail "$name" "GET $path via $e: Cache-Status '$CS', want hub-$region then $e, both fwd=uri-miss"
  else
    local miss=$CS
    fetch "$ip" "$path"
    if [[ $CODE == 200 && $CS == *"$e; hit"* ]] && cmp -s "$BODY" "$file"; then
      pass "$name" "GET $path via $e: the origin's $(wc -c <"$file") bytes; 'Cache-Status: $miss', then '$CS'"
    else
      fail "$name" "second GET $path via $e: $CODE, Cache-Status '$CS', want '$e; hit'"
    fi
  fi
}
check_path curl-eu "$eu_edge" eu "/index.html?run=$run_id" "$site/index.html"
check_path curl-us "$us_edge" us "/static/style.css?run=$run_id" "$site/static/style.css"

# ---- 3. publish through the origin's upload API, read it through an edge
head -c 65536 /dev/urandom >"$tmp/published.bin"
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $upload_token" --data-binary @"$tmp/published.bin" "$origin/smoke/$run_id/published.bin")
if [[ $code != 201 && $code != 204 && $code != 200 ]]; then
  fail upload "PUT to the origin answered $code"
else
  check_path upload "$us_edge" us "/smoke/$run_id/published.bin" "$tmp/published.bin"
fi

# ---- 3b. through the scrubber (GeoDNS's answer for an edge under attack)
fetch 172.28.1.60 "/static/logo.svg?scrub=$run_id"
if [[ $CODE == 200 && $CS == *"; fwd=uri-miss"* ]] && cmp -s "$BODY" "$site/static/logo.svg"; then
  pass scrubber "GET via the scrubber (172.28.1.60): the origin's bytes through an edge: '$CS'"
else
  fail scrubber "GET via the scrubber: $CODE, '$CS'"
fi

# ---- 4. purge through management, acknowledged by every cache
purge_path="/index.html?run=$run_id"
if out=$(timeout 60 "$verge" purge -manage "$manage" -token-file "$VERGE_RUN_DIR/secrets/operator.token" -url "http://$host$purge_path" -timeout 30s 2>&1); then
  acks=$(grep -cE '^\s+ok ' <<<"$out")
  want_last=$(last_seq "$manage")
  lagging=()
  for a in "${admins[@]}"; do
    s=$(last_seq "${a#*=}")
    [[ $s == "$want_last" ]] || lagging+=("${a%%=*}:$s")
  done
  if ((acks != 6)); then
    fail purge "verge purge: $acks of 6 nodes acknowledged: $out"
  elif ((${#lagging[@]})); then
    fail purge "6 acks, but purge logs behind management's last=$want_last: ${lagging[*]}"
  else
    fetch "$eu_edge" "$purge_path"
    e=$(edge_name "$eu_edge")
    if [[ $CODE == 200 && $CS == *"hub-eu; fwd=uri-miss"*"$e; fwd=uri-miss"* ]]; then
      pass purge "verge purge -url: 6/6 acks, every node's purge log at seq $want_last; refetch misses at hub-eu and $e"
    else
      fail purge "after the purge GET $purge_path via $e: $CODE, Cache-Status '$CS', want misses at hub-eu and $e"
    fi
  fi
else
  fail purge "verge purge failed: $out"
fi

# ---- 5. purge propagation: API call to the last node's ack, by
# management's clock (created -> latest ack), over $purges purges.
times=()
bad=0
for i in $(seq 1 "$purges"); do
  resp=$(api POST /purge "{\"kind\":\"tag\",\"value\":\"smoke$i\"}") || { bad=$((bad + 1)); continue; }
  id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$resp" 2>/dev/null) || { bad=$((bad + 1)); continue; }
  ms=""
  for _ in $(seq 1 200); do # 10 s at most
    st=$(api GET "/purge/$id") || break
    ms=$(python3 - "$st" <<'EOF'
import json, sys, calendar, re
def t(s):
    m = re.match(r'(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)(?:\.(\d+))?Z$', s)
    y, mo, d, h, mi, se, frac = m.groups()
    return calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(se))) + float('0.' + (frac or '0'))
p = json.loads(sys.argv[1])
if p["state"] == "running":
    sys.exit(0)
if p["state"] != "done" or p["progress"]["ok"] != 6:
    print("failed"); sys.exit(0)
print("%.2f" % ((max(t(n["at"]) for n in p["nodes"]) - t(p["created"])) * 1000))
EOF
)
    [[ -n $ms ]] && break
    sleep 0.05
  done
  if [[ -z $ms || $ms == failed ]]; then bad=$((bad + 1)); else times+=("$ms"); fi
done
if ((bad == 0 && ${#times[@]} == purges)); then
  stats=$(printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
v = [float(x) for x in sys.stdin.read().split()]
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print("min %.1f ms, median %.1f ms, p90 %.1f ms, max %.1f ms" % (v[0], q(0.5), q(0.9), v[-1]))')
  pass purge-propagation "$purges purges, each acknowledged by 6/6 nodes"
  figure "purge propagation over compose (management API call -> last of 6 acks, $purges tag purges): $stats"
else
  fail purge-propagation "$bad of $purges purges did not finish with 6/6 acks"
fi

# ---- 6. a hub fails: the edge serves from its cache and from the origin
cached="/static/logo.svg?run=$run_id"        # cached at edge-eu-1 and hub-eu
hubonly="/static/style.css?hub=$run_id"       # cached at edge-eu-2 and hub-eu only
fetch 172.28.1.11 "$cached"; fetch 172.28.1.11 "$cached"
c1=$CS
fetch 172.28.1.12 "$hubonly"
c2=$CS
head -c 32768 /dev/urandom >"$tmp/fresh.bin"       # cached nowhere
curl -sS -m 10 -o /dev/null -X PUT -H "Authorization: Bearer $upload_token" --data-binary @"$tmp/fresh.bin" "$origin/smoke/$run_id/fresh.bin"
if [[ $c1 != *"edge-eu-1; hit"* || $c2 != *"hub-eu; fwd=uri-miss"* ]]; then
  fail hub-down "set-up: want $cached a hit at edge-eu-1 ('$c1') and $hubonly filled through hub-eu ('$c2')"
fi
log "stopping hub-eu"
dc stop -t 10 hub-eu >/dev/null 2>&1
[[ $(docker inspect -f '{{.State.Running}}' "$(cid hub-eu)") == false ]] || fail hub-down "hub-eu did not stop"
fetch 172.28.1.11 "$cached"
if [[ $CODE == 200 && $CS == *"edge-eu-1; hit"* ]] && cmp -s "$BODY" "$site/static/logo.svg"; then
  pass hub-down-cached "hub-eu stopped: $cached still a hit at edge-eu-1 (${SECS}s)"
else
  fail hub-down-cached "hub-eu stopped: GET $cached via edge-eu-1: $CODE, '$CS'"
fi
fetch 172.28.1.11 "$hubonly"
if [[ $CODE == 200 && $CS == "edge-eu-1; fwd=uri-miss" ]] && cmp -s "$BODY" "$site/static/style.css"; then
  pass hub-down-uncached "hub-eu stopped: $hubonly (cached only at hub-eu) from the origin via edge-eu-1, 'Cache-Status: $CS' (${SECS}s)"
else
  fail hub-down-uncached "hub-eu stopped: GET $hubonly via edge-eu-1: $CODE, '$CS', want the origin's bytes and 'edge-eu-1; fwd=uri-miss'"
fi
fetch 172.28.1.12 "/smoke/$run_id/fresh.bin"
if [[ $CODE == 200 && $CS == "edge-eu-2; fwd=uri-miss" ]] && cmp -s "$BODY" "$tmp/fresh.bin"; then
  pass hub-down-new "hub-eu stopped: a new object from the origin via edge-eu-2 (${SECS}s)"
else
  fail hub-down-new "hub-eu stopped: GET fresh.bin via edge-eu-2: $CODE, '$CS'"
fi

# A purge while hub-eu is down: 5 acks now, and hub-eu replays it from
# management's log when it comes back, before it reports healthy.
resp=$(api POST /purge '{"kind":"tag","value":"static"}')
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$resp" 2>/dev/null)
state=""
for _ in $(seq 1 60); do # the purge timeout is 10s
  state=$(api GET "/purge/$id" | python3 -c '
import json, sys
p = json.load(sys.stdin)
if p["state"] != "running":
    print(p["state"], p["progress"]["ok"], " ".join(n["node"] for n in p["nodes"] if n["state"] != "ok"))' 2>/dev/null)
  [[ -n $state ]] && break
  sleep 0.5
done
if [[ $state == "failed 5 hub-eu" ]]; then
  pass purge-hub-down "purge #$id with hub-eu down: 5/6 acks, hub-eu marked failed"
else
  fail purge-hub-down "purge #$id with hub-eu down: want 'failed 5 hub-eu', got '$state'"
fi
log "starting hub-eu"
dc start hub-eu >/dev/null 2>&1
if pending=$(wait_healthy 60 hub-eu); then
  s=$(last_seq http://172.28.0.31:9080)
  if [[ $s == "$id" ]]; then
    pass hub-back "hub-eu back and healthy with purge #$id replayed from management's log (its log: last=$s)"
  else
    fail hub-back "hub-eu healthy but its purge log is at $s, want $id"
  fi
else
  fail hub-back "hub-eu not healthy within 60s of its start"
fi
# Edges take hub-eu back after its health checks (rise 2 x 1s).
back=""
for i in $(seq 1 30); do
  fetch 172.28.1.11 "/index.html?back=$run_id-$i"
  [[ $CS == *"hub-eu; fwd=uri-miss"* ]] && { back=$i; break; }
  sleep 0.5
done
[[ -n $back ]] && pass hub-rejoin "edge-eu-1 fetches through hub-eu again: '$CS'" || fail hub-rejoin "edge-eu-1 still bypasses hub-eu after 15s: '$CS'"

# ---- 7. an edge fails: GeoDNS stops answering it, then takes it back
log "stopping edge-eu-2"
dc stop -t 10 edge-eu-2 >/dev/null 2>&1
got=""
for _ in $(seq 1 30); do got=$(dig_a 172.28.1.53); [[ $got == 172.28.1.11 ]] && break; sleep 0.5; done
[[ $got == 172.28.1.11 ]] && pass dns-health-down "edge-eu-2 stopped: eu answers '$got'" || fail dns-health-down "edge-eu-2 stopped: eu answers '$got' after 15s, want 172.28.1.11 only"
dc start edge-eu-2 >/dev/null 2>&1
got=""
for _ in $(seq 1 60); do got=$(dig_a 172.28.1.53); [[ $got == "172.28.1.11 172.28.1.12" ]] && break; sleep 0.5; done
[[ $got == "172.28.1.11 172.28.1.12" ]] && pass dns-health-up "edge-eu-2 back: eu answers '$got'" || fail dns-health-up "edge-eu-2 started: eu answers '$got' after 30s"

# ---- 8. management saw every node report; nothing crashed
nodes=$(api GET /nodes | python3 -c '
import json, sys
d = json.load(sys.stdin)
ns = d["nodes"] if isinstance(d, dict) and "nodes" in d else d
print(" ".join(sorted(n["name"] for n in ns if n.get("last_report"))))' 2>/dev/null)
want="dns edge-eu-1 edge-eu-2 edge-us-1 edge-us-2 hub-eu hub-us scrubber"
[[ $nodes == "$want" ]] && pass reports "management has reports from $nodes" || fail reports "management has reports from '$nodes', want '$want'"
restarts=()
for s in "${services[@]}"; do
  n=$(docker inspect -f '{{.RestartCount}}' "$(cid "$s")" 2>/dev/null)
  [[ $n == 0 ]] || restarts+=("$s:$n")
done
((${#restarts[@]} == 0)) && pass no-restarts "no container restarted" || fail no-restarts "restarted: ${restarts[*]}"
