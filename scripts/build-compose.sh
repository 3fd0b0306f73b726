#!/usr/bin/env bash
# Builds the real Docker Compose CLI (v5) from the Go module proxy into a cache
# outside the repository, for the compose compatibility test and the benchmarks.
#
#   scripts/build-compose.sh            # builds $COMPOSE_VERSION (default below)
#   COMPOSE_VERSION=v5.5.0 scripts/build-compose.sh
#
# Result: ${SHIPWATCH_TESTENV:-$HOME/.cache/shipwatch-testenv}/bin/docker-compose
# (a symlink to docker-compose-<version>, so several versions can coexist).
#
# Idempotent: if the versioned binary exists and answers `version`, nothing is built.
#
# Why v5.6.0 by default: it is the newest v5 whose go.mod the local toolchain
# accepts. v5.7.0 (the newest on the proxy) declares `go 1.26.10`, and the
# project pins Go 1.26.8 with GOTOOLCHAIN=local, so it cannot be built here.
set -euo pipefail

COMPOSE_VERSION="${COMPOSE_VERSION:-v5.6.0}"
TESTENV="${SHIPWATCH_TESTENV:-$HOME/.cache/shipwatch-testenv}"
BIN_DIR="$TESTENV/bin"
TARGET="$BIN_DIR/docker-compose-$COMPOSE_VERSION"
LINK="$BIN_DIR/docker-compose"

mkdir -p "$BIN_DIR"

if [[ -x "$TARGET" ]] && "$TARGET" version >/dev/null 2>&1; then
	ln -sfn "$(basename "$TARGET")" "$LINK"
	echo "docker-compose $COMPOSE_VERSION already built: $TARGET"
	"$LINK" version
	exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

go mod init shipwatch.local/build-compose >/dev/null 2>&1
# compose's own go.mod excludes two pseudo-versions that break kustomize's
# dependencies; exclude directives only apply in the main module, so repeat them.
cat >>go.mod <<'EOF'

exclude (
	github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc
	github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2
)
EOF

start=$(date +%s)
echo "fetching github.com/docker/compose/v5@$COMPOSE_VERSION ..."
go get "github.com/docker/compose/v5@$COMPOSE_VERSION"
go mod download
echo "building docker-compose $COMPOSE_VERSION (2 cores: several minutes) ..."
go build -trimpath \
	-ldflags "-w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
	-o "$TARGET.tmp" github.com/docker/compose/v5/cmd
mv "$TARGET.tmp" "$TARGET"
end=$(date +%s)

ln -sfn "$(basename "$TARGET")" "$LINK"
echo "built $TARGET in $((end - start))s"
go version -m "$TARGET" | grep -E 'compose-spec/compose-go|moby/moby/client|docker/cli\s' || true
"$LINK" version
