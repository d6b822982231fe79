# safeperm: make build | test | demo | bench | lint
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
PKGS  := ./...
STATICCHECK_VERSION ?= v0.8.2
NATS_SERVER_VERSION ?= v2.15.2
# The build stamped into the binaries (planner version, worker --version).
# The toolchain records vcs.revision and vcs.time itself unless -buildvcs=false
# (GOFLAGS, CI); stamping them too makes the answer the same either way.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
VCS_TIME ?= $(shell git log -1 --format=%cI 2>/dev/null)
BUILDINFO := github.com/safeperm/safeperm/internal/buildinfo
LDFLAGS  := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).revision=$(REVISION) -X $(BUILDINFO).time=$(VCS_TIME)

.PHONY: all build test test-short demo bench lint vet fmt tools reliability clean

all: build

## build: compile planner, worker and pvwasim into ./bin
build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

## test: every test, race detector on (this is what CI runs)
test:
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

## test-short: the quick subset
test-short:
	$(GO) test -race -short -count=1 $(PKGS)

## demo: migrate a simulated vault of a few thousand Safes on the embedded default, then re-run it
demo: build
	./scripts/demo.sh

## bench: the speed and memory benchmarks (figures as ratios; writes BENCHMARKS.md)
bench:
	SAFEPERM_BENCH_MARKDOWN=$(CURDIR)/BENCHMARKS.md $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench

## lint: go vet and staticcheck (installed into ./bin through the Go module proxy)
lint: vet $(BIN)/staticcheck
	$(BIN)/staticcheck $(PKGS)

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

$(BIN)/staticcheck:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## reliability: the 10,000-Safe soak of ./reliability (real processes: worker kills, NATS node loss, PVWA faults...); figures on RELIABILITY: lines
reliability:
	SAFEPERM_SOAK=1 $(GO) test -race -count=1 -timeout 90m -v -run . ./reliability/ 2>&1 | tee reliability.log | grep -E 'RELIABILITY:|^(---|ok|FAIL|PASS)'; test $${PIPESTATUS[0]} -eq 0

## tools: nats-server binary (for the cluster configs and manual runs)
tools: $(BIN)/nats-server

$(BIN)/nats-server:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)

clean:
	rm -rf $(BIN) safeperm-data
