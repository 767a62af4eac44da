# sumkeep — see README.md.
GO      ?= go
BIN     := bin/sumkeep

.PHONY: build install run test bench vet fmt

build:
	$(GO) build -o $(BIN) ./cmd/sumkeep

# Install sumkeep where go install puts commands: $(go env GOBIN), else
# $(go env GOPATH)/bin (put that directory on your PATH).
install:
	$(GO) install ./cmd/sumkeep
	@dir=$$($(GO) env GOBIN); echo "installed $${dir:-$$($(GO) env GOPATH)/bin}/sumkeep"

# Serve the default upstream (sum.golang.org, found through GOPROXY as the go
# command finds it) from the embedded store ./sumkeep-data/sumkeep.db, syncing
# every 10 minutes; lookups the store lacks are fetched on demand (lazy mode)
# when the upstream refuses data tiles. SUMKEEP_DB=postgres://… uses Postgres.
run: build
	./$(BIN) serve --sync-schedule '@every 10m'

# vet, then every test under the race detector. Postgres tests need a
# server at 127.0.0.1:5432 (SUMKEEP_TEST_POSTGRES overrides); with CI=true
# they fail rather than skip. The race detector costs little here (the
# tests wait on databases, processes and sockets more than they compute:
# 4m58s for all of them on 2 cores, against about 4m without it) and finds
# what no assertion does: two goroutines writing one buffer.
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

# Sync, store-size and lookup-load figures on a 1,000,000-record upstream,
# and the sync with the Trillian replica on beside it off (-trillian=false
# skips it; the first run builds Trillian's binaries, ~4 minutes on 2 cores);
# then verify's wall beside its CPU time, whole process, against Postgres and
# SQLite at 2 and 3,000 lines; then seed, verify, bundle and
# Postgres-vs-SQLite lookup figures on recorded real data (a real project's
# go.sum).
#
# A database on this machine is reached over its Unix socket (PGSOCKET), as
# README.md advises for a local database: a lookup that misses the record
# cache costs the database a third less CPU than over TCP loopback.
# SUMKEEP_TEST_POSTGRES, if set, is used as given.
PGSOCKET ?= /var/run/postgresql
BENCH_POSTGRES := $(if $(wildcard $(PGSOCKET)/.s.PGSQL.5432),postgres://postgres@/postgres?host=$(PGSOCKET)&sslmode=disable)

bench: export SUMKEEP_TEST_POSTGRES := $(or $(SUMKEEP_TEST_POSTGRES),$(BENCH_POSTGRES))
bench:
	$(GO) run ./bench
	$(GO) run ./bench/verify
	$(GO) run ./bench/realdata

fmt:
	gofmt -w $$($(GO) list -f '{{.Dir}}' ./...)
