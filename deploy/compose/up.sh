#!/usr/bin/env bash
# Brings the compose demo up: the run directory (tokens, a copy of the
# sample site), the image when it is missing, then every container.
#
#   deploy/compose/up.sh [docker-compose up flags]
#   docker-compose -f deploy/compose/docker-compose.yml down -v   # stop and delete
#
# Environment: VERGE_RUN_DIR (default deploy/compose/run), VERGE_IMAGE
# (default verge:dev), COMPOSE_PROJECT_NAME (default: compose's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export VERGE_RUN_DIR=${VERGE_RUN_DIR:-$here/run}
export VERGE_IMAGE=${VERGE_IMAGE:-verge:dev}
run=$VERGE_RUN_DIR

command -v docker-compose >/dev/null || { echo "up.sh: docker-compose not found (apt-get install docker-compose)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "up.sh: no Docker engine answers (docker info failed)" >&2; exit 1; }

# The image: built here from the static binary, never pulled.
if ! docker image inspect "$VERGE_IMAGE" >/dev/null 2>&1; then
  "$here/../build.sh" "$VERGE_IMAGE"
fi

# Tokens: made once, never committed. The containers run as user 65532,
# which must read the files bind-mounted into them; the run directory itself
# stays private to this host user.
mkdir -p "$run/secrets"
chmod 700 "$run"
for name in cluster operator upload; do
  f=$run/secrets/$name.token
  if [[ ! -s $f ]]; then
    (umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$f"; echo >>"$f")
  fi
done
# The origin's content: a writable copy of the sample site, so the upload
# API can publish into it.
if [[ ! -d $run/site ]]; then
  cp -R "$here/site" "$run/site"
fi
if [[ $(id -u) == 0 ]]; then
  chown -R 65532:65532 "$run/secrets" "$run/site"
  chmod 500 "$run/secrets"; chmod 400 "$run/secrets"/*.token
else
  # Without root the files cannot change owner: let "other" read them (the
  # 700 run directory keeps other host users out).
  chmod 755 "$run/secrets"; chmod 644 "$run/secrets"/*.token
  chmod -R a+rwX "$run/site"
fi

docker-compose -f "$here/docker-compose.yml" up -d "$@"
cat <<EOT

Verge is up. From this host (your source address on each network decides the region):
  dig @172.28.1.53 www.demo.test +short                     # eu edges (172.28.1.x)
  dig @172.28.2.53 www.demo.test +short                     # us edges (172.28.2.x)
  dig @172.28.1.53 www.demo.test +short +subnet=172.28.2.0/24   # a us client, by ECS
  curl -i --resolve www.demo.test:8080:172.28.1.11 http://www.demo.test:8080/
  curl -s -X PUT -H "Authorization: Bearer \$(cat $run/secrets/upload.token)" --data-binary @FILE http://172.28.0.10:8070/new.txt
  verge purge -manage http://172.28.0.20:9300 -token-file $run/secrets/operator.token -tag html
  dashboard: http://172.28.0.20:9300/  (operator token: $run/secrets/operator.token)
EOT
