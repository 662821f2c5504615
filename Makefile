# alpinist — build, demo, test, bench.
#
#   make            build bin/alpinist
#   make demo       build, generate the test repository, run the demo
#   make test       the whole test suite (installs what it needs)
#   make testrepo   generate the signed synthetic Alpine repositories
#   make fuzz       run every fuzz target for FUZZTIME each
#   make bench      run the benchmarks

SHELL   := /bin/sh
export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
FUZZTIME ?= 30s

# The synthetic test repository lives in the user cache, not in git;
# testdata/repo points at it so specs in testdata/specs can use ../repo.
CACHE    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/alpinist
TESTREPO ?= $(CACHE)/testrepo

.PHONY: all build deps deps-test demo test test-short testrepo fuzz bench vet clean

all: build

build: deps
	$(GO) build -trimpath -o bin/alpinist ./cmd/alpinist

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

testrepo: deps-test
	$(GO) run ./cmd/testrepo -o $(TESTREPO)
	@ln -sfn $(TESTREPO) testdata/repo

demo: build testrepo
	@scripts/demo.sh

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: deps-test testrepo vet
	$(GO) test -timeout 25m ./...

test-short: deps
	$(GO) test -short ./...

fuzz: deps
	@scripts/fuzz.sh $(FUZZTIME)

bench: build testrepo
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin testdata/repo
