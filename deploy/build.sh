#!/usr/bin/env bash
# Builds the static verge binaries on this host and the verge image from
# them, without pulling anything (deploy/Dockerfile is FROM scratch).
#
#   deploy/build.sh [TAG]        # default: verge:dev, or $VERGE_IMAGE
#
# Output: deploy/build/ (gitignored) holds verge, healthcheck, the CA roots
# and the image's build context.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-${VERGE_IMAGE:-verge:dev}}
out=deploy/build
ca=${VERGE_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}

[[ -r $ca ]] || { echo "deploy/build.sh: no CA roots at $ca (apt-get install ca-certificates, or set VERGE_CA_FILE)" >&2; exit 1; }
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)

mkdir -p "$out/state"
echo "building $out/verge ($version) and $out/healthcheck"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out/verge" ./cmd/verge
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/healthcheck" ./deploy/healthcheck
cp "$ca" "$out/ca-certificates.crt"

# A static binary has no program interpreter (PT_INTERP names it near the
# start of the file); refuse to ship one that has.
for b in "$out/verge" "$out/healthcheck"; do
  if head -c 8192 "$b" | grep -aq -e '/ld-linux' -e '/ld-musl'; then
    echo "deploy/build.sh: $b is dynamically linked" >&2; exit 1
  fi
done

echo "building image $tag"
# The legacy builder needs no registry and no buildx; its deprecation
# notice is only shown when the build fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! DOCKER_BUILDKIT=0 docker build -q -f deploy/Dockerfile -t "$tag" "$out" >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
docker image inspect -f 'image {{index .RepoTags 0}}: {{.Size}} bytes, user {{.Config.User}}, entrypoint {{.Config.Entrypoint}}' "$tag"
