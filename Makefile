# sumkeep — see README.md.
GO      ?= go
BIN     := bin/sumkeep
# Until the embedded store lands, `make run` uses the local Postgres server.
SUMKEEP_DB ?= postgres://postgres@127.0.0.1:5432/sumkeep?sslmode=disable
export SUMKEEP_DB

.PHONY: build run test bench vet fmt

build:
	$(GO) build -o $(BIN) ./cmd/sumkeep

# Serve the default upstream (sum.golang.org) and keep the copy fresh.
run: build
	@case "$$SUMKEEP_DB" in postgres://*127.0.0.1*/sumkeep*) \
		psql "$${SUMKEEP_DB%/sumkeep*}/postgres" -qtc "SELECT 1 FROM pg_database WHERE datname='sumkeep'" | grep -q 1 || \
		psql "$${SUMKEEP_DB%/sumkeep*}/postgres" -qc "CREATE DATABASE sumkeep";; esac
	./$(BIN) serve --sync-schedule '@every 10m'

# vet, then every test. Postgres tests need a server at 127.0.0.1:5432
# (SUMKEEP_TEST_POSTGRES overrides); with CI=true they fail rather than skip.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...

# Sync, store-size and lookup-load figures on a 1,000,000-record upstream.
bench:
	$(GO) run ./bench

fmt:
	gofmt -w $$($(GO) list -f '{{.Dir}}' ./...)
