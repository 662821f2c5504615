# alpinist — build, demo, test, bench.
#
#   make            build bin/alpinist
#   make demo       build, generate the test repository, run the demo
#   make test       the whole test suite (installs what it needs)
#   make testrepo   generate the signed synthetic Alpine repositories
#   make fuzz       run every fuzz target for FUZZTIME each
#   make bench      one table of timings and ratios (docs/performance.md)
#   make repro      build the demo twice in varied conditions, compare every output

SHELL   := /bin/sh
export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
FUZZTIME ?= 30s
# make test fuzzes every target briefly too, by a count of executions
# (no deadline to race, see scripts/fuzz.sh); make fuzz: FUZZTIME each.
TEST_FUZZTIME ?= 5000x

# The synthetic test repository lives in the user cache, not in git;
# testdata/repo points at it so specs in testdata/specs can use ../repo.
CACHE    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/alpinist
TESTREPO ?= $(CACHE)/testrepo

.PHONY: all build agents print-agent-src deps deps-test demo test test-short testrepo fuzz bench bench-go repro vet clean image

all: build

# The build VM's agents, one per supported target arch, static, embedded
# into bin/alpinist (tag alpinist_agents) so users need no Go toolchain.
# They are named by arch.Arch.Agent: the GOARCH, and for arm its version
# (armv7 for armv7, armv6 for armhf: GOARCH=arm with GOARM=7 or 6).
AGENTS_FOR := amd64 386 arm64 armv7 armv6 ppc64le s390x riscv64
AGENTS := $(AGENTS_FOR:%=agent/embed/agents/alpinist-agent-%)
# What bin/alpinist embeds: each agent zstd-compressed (agent/embed.Pack).
AGENTS_ZST := $(AGENTS:%=%.zst)
agent_goarch = $(if $(filter armv%,$(1)),arm,$(1))
AGENT_GOARCHES := $(sort $(foreach a,$(AGENTS_FOR),$(call agent_goarch,$(a))))
# Every file an agent is built from: the Go and embedded files of each
# package of this module that cmd/alpinist-agent links, for each arch
# (go list -deps: apk/* and internal/* as well as agent/),
# and go.mod/go.sum for the modules. agent/embed.Sources is the same
# list; TestMakefileAgentSources checks the two agree.
AGENT_DEPS_FMT := {{if .Module}}{{if .Module.Main}}{{range .GoFiles}}{{$$.Dir}}/{{.}} {{end}}{{range .EmbedFiles}}{{$$.Dir}}/{{.}} {{end}}{{end}}{{end}}
AGENT_SRC := $(sort $(foreach a,$(AGENT_GOARCHES),$(shell CGO_ENABLED=0 GOOS=linux GOARCH=$(a) $(GO) list -deps -f '$(AGENT_DEPS_FMT)' ./cmd/alpinist-agent 2>/dev/null))) go.mod go.sum

# The commit and its date for alpinist --version (not the build's date:
# the binary stays reproducible).
COMMIT      := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
COMMIT_DATE := $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS     := -X main.commit=$(COMMIT) -X main.commitDate=$(COMMIT_DATE)

build: deps $(AGENTS_ZST)
	$(GO) build -trimpath -tags alpinist_agents -ldflags "$(LDFLAGS)" -o bin/alpinist ./cmd/alpinist

agents: $(AGENTS_ZST)

# Static pattern rules: a generic alpinist-agent-% would also match the
# .zst names, and a fresh clone (no agents yet) would build those as Go.
$(AGENTS_ZST): %.zst: %
	$(GO) run ./agent/embed/pack $< $@

$(AGENTS): agent/embed/agents/alpinist-agent-%: $(AGENT_SRC)
	@mkdir -p $(@D)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(call agent_goarch,$*) $(if $(filter armv%,$*),GOARM=$(patsubst armv%,%,$*)) $(GO) build -trimpath -ldflags "-s -w" -o $@ ./cmd/alpinist-agent

deps:
	@scripts/deps.sh build

# The agents' source files, one a line (TestMakefileAgentSources).
print-agent-src:
	@printf '%s\n' $(AGENT_SRC)

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

# build: the repro test runs bin/alpinist as a user would.
test: deps-test testrepo vet build
	$(GO) test -timeout 25m ./...
	@scripts/fuzz.sh $(TEST_FUZZTIME)

# Two builds of testdata/specs/demo.yaml (x86_64 and aarch64; every
# output, SBOMs, lock) under another umask, time zone, locale,
# directory, cache (cold, then a warm copy elsewhere) and user; every
# output must be the same bytes (alpinist compare names any difference).
repro: build testrepo
	$(GO) test -count=1 -timeout 20m -run '^TestRepro$$' -v ./cmd/alpinist

test-short: deps
	$(GO) test -short ./...

fuzz: deps
	@scripts/fuzz.sh $(FUZZTIME)

# One table from one run: a build's phases, a cache hit, one arch and
# two, the writers against mke2fs, qemu-img and gzip side by side, the
# build VM's boot against a bare kernel, peak RSS on a 1 GiB rootfs
# (docs/performance.md). bench-go: every go test benchmark.
# make bench BEFORE=REV also times the real set's cold builds with the
# alpinist of git revision REV, built in a temporary worktree: each
# phase before and after, in one run.
bench: build testrepo
ifneq ($(BEFORE),)
	@rm -rf /tmp/alpinist-bench-before && git worktree prune && git worktree add --detach /tmp/alpinist-bench-before $(BEFORE)
	$(MAKE) -C /tmp/alpinist-bench-before build
	$(GO) run ./cmd/bench -before /tmp/alpinist-bench-before/bin/alpinist; s=$$?; git worktree remove --force /tmp/alpinist-bench-before; exit $$s
else
	$(GO) run ./cmd/bench
endif

# The alpinist image a fleet's pods run (deploy/alpinist-image.yaml): no
# Dockerfile, alpinist builds it of itself from Alpine's packages (QEMU
# for every arch) and its static binary for x86_64 and aarch64. It needs
# Alpine's mirror (dl-cdn.alpinelinux.org). Push it with
# bin/alpinist push out/image/alpinist.oci REGISTRY/alpinist:VERSION.
image: build
	@mkdir -p deploy/bin
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -tags alpinist_agents -ldflags "$(LDFLAGS)" -o deploy/bin/alpinist-x86_64 ./cmd/alpinist
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -tags alpinist_agents -ldflags "$(LDFLAGS)" -o deploy/bin/alpinist-aarch64 ./cmd/alpinist
	bin/alpinist build deploy/alpinist-image.yaml -o out/image

bench-go: build testrepo
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin testdata/repo agent/embed/agents
