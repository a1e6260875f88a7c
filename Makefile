GO      ?= go
BIN     ?= bin/raftcdc
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test test-long integration cluster demo bench chaos lint clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/raftcdc

# The default test run: unit tests, in-process clusters and the short
# multi-process scenarios, all with the race detector. The tests start real
# MariaDB, PostgreSQL, etcd and kcat: test-deps.sh installs the missing ones
# as root, or stops at once with the apt-get command to run.
test:
	./scripts/test-deps.sh
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 25m ./...

# Tests that take minutes each (TestLong*): not in the default run; CI runs
# them after it.
test-long:
	./scripts/test-deps.sh
	RAFTCDC_LONG_TESTS=1 $(GO) test -race -count=1 -timeout 40m -run 'TestLong' ./...

# ARGS go to the test binary, e.g. ARGS="-kills=10".
integration:
	$(GO) test -race -count=1 -timeout 30m -v ./integration/... $(if $(ARGS),-args $(ARGS))

# Three local nodes on loopback in the foreground; Ctrl-C stops them all.
# Data stays in .cluster/ so a second `make cluster` restarts the same cluster.
cluster: build
	./scripts/cluster.sh $(BIN)

demo: build
	./scripts/demo.sh $(BIN)

bench: build
	./bench/run.sh

# make chaos DURATION=30m [TLS=1] [ARGS=-chaos-seed=N]: the long chaos run,
# summary at the end; TLS=1 runs the nodes with mutual TLS (certificates from
# `raftcdc tools tls`). If it fails, the whole node logs are kept in
# $(CHAOS_LOGS).
CHAOS_LOGS ?= /tmp/raftcdc-chaos-logs
chaos: build
	RAFTCDC_IT_KEEP_LOGS=$(CHAOS_LOGS) $(GO) test -count=1 -timeout 0 -run TestChaosLong -v ./integration/... -args -chaos-duration=$(or $(DURATION),5m) $(if $(TLS),-chaos-tls) $(ARGS)

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) vet ./...

clean:
	rm -rf bin .cluster
