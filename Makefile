# shipwatch: run `make help` for the targets.
GO       ?= go
# go.mod needs Go 1.27 (fluxcd/pkg/ssa, kustomize); the module proxy serves this toolchain.
export GOTOOLCHAIN ?= go1.27.4
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/shipwatch

.PHONY: help build test testenv test-unit test-e2e test-compat test-monitoring fuzz lint demo demo-clean bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/shipwatch
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/shipwatch

test: testenv ## every test: unit, integration and end-to-end (needs the Docker Engine, git, sshd)
	SHIPWATCH_TESTENV_REQUIRED=1 $(GO) test -race -count=1 -timeout 30m ./...

testenv: ## build the Kubernetes test cluster's binaries once (cached in ~/.cache/shipwatch-testenv)
	test/k8s/testenv.sh build

test-unit: ## -short: no Docker Engine or test cluster needed (git and sshd still are, for the source tests)
	$(GO) test -race -count=1 -short ./...

test-e2e: ## end-to-end tests against the Docker Engine
	$(GO) test -race -count=1 -timeout 20m ./test/e2e/...

test-compat: ## our config hash vs the compose v5 SDK and CLI (separate module; builds the CLI once)
	scripts/build-compose.sh
	cd test/composecompat && SHIPWATCH_REQUIRE_COMPOSE=1 $(GO) test -count=1 ./...

test-monitoring: ## alert rules and dashboard against Prometheus' parsers and our real metrics (separate module)
	cd test/monitoring && $(GO) test -count=1 ./...

FUZZTIME ?= 20s
FUZZ = $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s -fuzz
fuzz: ## run each fuzz target for FUZZTIME (their seed corpora also run in make test)
	$(FUZZ) '^FuzzParse$$' ./internal/config
	$(FUZZ) '^FuzzPayloads$$' ./internal/webhook
	$(FUZZ) '^FuzzLoadCompose$$' ./manifests
	$(FUZZ) '^FuzzLoadKube$$' ./manifests

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

demo: build ## build the quickstart image, make a local Git repo and run shipwatch on it
	./examples/quickstart/demo.sh

demo-clean: ## stop the demo and remove its containers (by label)
	./examples/quickstart/demo.sh clean

bench: ## benchmarks: no-op reconcile vs docker compose up -d (see docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchtime 20x ./bench/...

clean:
	rm -rf bin
