# CWP license export gateway. `make help` lists the targets.
SHELL := /bin/bash
BUF := go tool -modfile=tools/go.mod buf
GATEWAY_V1 := github.com/grpc-ecosystem/grpc-gateway@v1.16.0
RUN_FLAGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the service on the embedded emulator (console and REST http://127.0.0.1:8080/, gRPC :9090; RUN_FLAGS=... for flags)
	go run ./cmd/cwpexportd $(RUN_FLAGS)

.PHONY: fleet
fleet: ## Run a local fleet: PostgreSQL, an emulator, three replicas on loopback (FLEET_REST_PORT=8081 FLEET_GRPC_PORT=9091 FLEET_EMULATOR_PORT=9100; Ctrl-C stops it)
	scripts/fleet.sh

.PHONY: build
build: ## Build the binaries into bin/
	go build -o bin/ ./cmd/...

.PHONY: test
test: ## Run all tests with the race detector (without PostgreSQL, its tests are skipped, loudly)
	@scripts/pg-cluster.sh bindir >/dev/null 2>&1 || [ -n "$$CWPEXPORT_TEST_PG" ] || \
	  echo "*** PostgreSQL's server is not installed: the tests that need it will be SKIPPED (apt-get install postgresql, or set CWPEXPORT_TEST_PG=postgres://...) ***" >&2
	go test -race -count=1 ./...

.PHONY: clients
clients: ## Run the Python and Node.js packages, grpcurl, curl, CLI and browser clients against a fresh service
	clients/install-tools.sh
	clients/run-all.sh

# The client packages' generated code needs Debian's protoc 3.21 and npm
# (clients/install-tools.sh installs them); `make test` and `make run` do not.
.PHONY: generate-clients
generate-clients: ## Regenerate the Python and Node.js packages' code (needs protoc, grpc_python_plugin, npm)
	clients/generate.sh

.PHONY: checkgenerate-clients
checkgenerate-clients: generate-clients ## Fail if the client packages' generated code differs from the protos
	git add -N clients/python/src clients/node/src clients/node/dist && \
	  git diff --exit-code -- clients/python/src clients/node/src clients/node/dist

# A count, not a duration: a duration's deadline can race the fuzz workers'
# shutdown and fail a run that found nothing (Go issue 75804, fixed in 1.27).
FUZZTIME ?= 20000x
.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 20000 inputs); seed corpora are in testdata/fuzz
	go test -run '^$$' -fuzz '^FuzzValidateExport$$' -fuzztime $(FUZZTIME) ./server/service
	go test -run '^$$' -fuzz '^FuzzParseTaskID$$' -fuzztime $(FUZZTIME) ./server/service
	go test -run '^$$' -fuzz '^FuzzDecodeCloudResponses$$' -fuzztime $(FUZZTIME) ./server/cloud

.PHONY: bench
bench: ## Run the benchmarks (see docs/BENCHMARKS.md)
	go run ./bench/cmd/benchrun
	go run ./bench/cmd/benchregistry
	go run ./bench/cmd/benchfleet
	go run ./bench/cmd/benchabuse

.PHONY: bench-scale
bench-scale: ## Measure the hot statements with 100k+100k fleet rows and 1M registry records against 1k (PostgreSQL)
	go run ./bench/cmd/benchscale

.PHONY: bench-fleet
bench-fleet: ## Run the fleet's benchmarks alone: three replicas on PostgreSQL (BENCH_FLEET_ONLY=fleet1,fleet4 for some)
	go run ./bench/cmd/benchfleet

SOAK_DURATION ?= 30m

.PHONY: soak
soak: ## Soak the fleet (not in CI): 3 replicas, PostgreSQL, a faulty cloud, crashes; SOAK_DURATION=5m for a short run
	go run ./bench/cmd/soak -duration $(SOAK_DURATION) $(SOAK_FLAGS)

.third_party: go.mod Makefile
	@rm -rf .third_party && mkdir -p .third_party/google/api .third_party/google/rpc
	@v1=$$(go mod download -json $(GATEWAY_V1) | sed -n 's/^\s*"Dir": "\(.*\)",$$/\1/p'); \
	 install -m 0644 $$v1/third_party/googleapis/google/api/{annotations,http,httpbody}.proto .third_party/google/api/ && \
	 install -m 0644 $$v1/third_party/googleapis/google/rpc/{status,error_details,code}.proto .third_party/google/rpc/
	@touch .third_party

.PHONY: flagsdoc
flagsdoc: ## Regenerate docs/flags.md from cwpexportd's flags (server/flags)
	go run ./server/flags/flagsdoc > docs/flags.md.tmp && mv docs/flags.md.tmp docs/flags.md

.PHONY: generate
generate: .third_party flagsdoc ## Regenerate gen/ and docs/errors.md from proto/, docs/flags.md from the flags
	rm -rf gen/cwpexport gen/openapi/*.json && $(BUF) generate

.PHONY: lint
lint: .third_party ## buf lint, buf format check, go vet, gofmt check
	$(BUF) lint
	$(BUF) format -d --exit-code proto
	go vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

.PHONY: checkgenerate
checkgenerate: generate ## Fail if gen/, docs/errors.md or docs/flags.md differ from what the protos and the flags generate
	git add -N gen docs/errors.md docs/flags.md && git diff --exit-code -- gen docs/errors.md docs/flags.md

# ---- Deployment: image, release, chart, alerts, upgrades (docs/operations.md) ----
VERSION ?= $(shell git describe --tags --always --dirty --match 'v*' 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE ?= localhost/cwpexport:$(VERSION)
export VERSION COMMIT IMAGE

.PHONY: image
image: ## Build the OCI image (podman, or docker with ENGINE=docker); IMAGE names it
	deploy/image/build.sh

.PHONY: image-check
image-check: ## Check the image without a container runtime: config, size, read-only root, health, an export (root)
	deploy/image/check.sh

# Tools of the deployment checks, from their own module (deploy/tools/go.mod:
# helm, promtool, cyclonedx-gomod, the chart and upgrade checks), never the
# service's: built once into bin/tools, then from Go's build cache.
DEPLOY_TOOLS := bin/tools
.PHONY: deploy-tools
deploy-tools: ## Build helm, promtool, cyclonedx-gomod and the deploy checks into bin/tools
	cd deploy/tools && go build -o ../../$(DEPLOY_TOOLS)/ helm.sh/helm/v4/cmd/helm \
	  github.com/prometheus/prometheus/cmd/promtool github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod \
	  ./chartcheck ./upgradecheck

.PHONY: manifests
manifests: ## Render deploy/kubernetes/ from the chart's profiles; copy the alerts into the chart
	install -m 0644 deploy/prometheus/alerts.yaml deploy/helm/cwpexport/files/alerts.yaml
	$(DEPLOY_TOOLS)/chartcheck -helm $(DEPLOY_TOOLS)/helm -write deploy/kubernetes

.PHONY: checkmanifests
checkmanifests: manifests ## Fail if deploy/kubernetes/ or the chart's alerts differ from what the chart renders
	git add -N deploy/kubernetes deploy/helm/cwpexport/files && git diff --exit-code -- deploy/kubernetes deploy/helm/cwpexport/files

.PHONY: chart-check
chart-check: build ## helm lint --strict, strict decoding, flags/ports/drain checks and start-up of each case of values
	$(DEPLOY_TOOLS)/chartcheck -helm $(DEPLOY_TOOLS)/helm -daemon bin/cwpexportd -emulator bin/cwp-emulator

.PHONY: alerts-test
alerts-test: ## promtool check and unit-test the alert rules (deploy/prometheus)
	$(DEPLOY_TOOLS)/promtool check rules deploy/prometheus/alerts.yaml
	cd deploy/prometheus && ../../$(DEPLOY_TOOLS)/promtool test rules alerts_test.yaml

.PHONY: release
release: ## Build release binaries, SHA256SUMS and SBOMs into dist/VERSION (make deploy-tools first)
	CYCLONEDX=$(DEPLOY_TOOLS)/cyclonedx-gomod deploy/release/release.sh

.PHONY: upgrade-check
upgrade-check: ## Fail if a migration since the previous release (deploy/upgrade/previous-release) contracts the schema unmarked
	$(DEPLOY_TOOLS)/upgradecheck -previous deploy/upgrade/previous-release

.PHONY: upgrade-test
upgrade-test: ## A replica of the previous release and one of this commit on one PostgreSQL: creations, watches, budget
	deploy/upgrade/mixed-version.sh

.PHONY: print-version
print-version: ## Print VERSION (what make image and make release use)
	@echo $(VERSION)
