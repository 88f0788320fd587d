# Weft's build and test entry points. `make test` is what CI runs.
GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS := ./...

.PHONY: test lint vet unit bench compare quickstart build faults soak

## test: everything CI checks — formatting, vet, staticcheck, race-enabled tests
test: lint unit

lint: vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(STATICCHECK) $(PKGS)
	cd bench && $(GO) vet ./...

vet:
	$(GO) vet $(PKGS)

## unit: all tests with the race detector, plus each benchmark once at a tiny size
unit:
	$(GO) test -race -count=1 -timeout 10m $(PKGS)
	$(GO) test -count=1 -run 'TestWALBounded' ./store/sqlite/
	WEFT_BENCH_TASKS=2000 WEFT_BENCH_SAMPLES=100 WEFT_BENCH_TERMINAL=5000 $(GO) test -run '^$$' -bench . -benchtime 1x -count=1 $(PKGS)

## bench: the benchmarks recorded in docs/benchmarks.md (full sizes, 5 runs each)
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 5 . ./store/sqlite/

## compare: Weft against River, goqite and raw SQL on SQLite and PostgreSQL (WEFT_BENCH_POSTGRES_URL or the local server; COMPARE_FLAGS adds flags, e.g. COMPARE_FLAGS='-backend sqlite -runs 5')
compare:
	cd bench && $(GO) run ./compare -db "$${WEFT_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}" $(COMPARE_FLAGS)

## faults: the fault-injection suite's long variant — minutes of SIGKILLed workers, killed servers and skewed clocks on SQLite and PostgreSQL (the short variant runs in unit); -v prints the figures
faults:
	WEFT_FAULTS_LONG=1 $(GO) test -race -count=1 -timeout 45m -v ./internal/faults/

## soak: the resilience soak — mixed load for WEFT_SOAK (default 10m) on SQLite, sampling RSS, heap, goroutines and enqueue-to-start p99 every second; WEFT_SOAK_OUT=FILE keeps the samples as CSV
soak:
	WEFT_SOAK=$${WEFT_SOAK:-10m} $(GO) test -count=1 -run '^TestSoak$$' -timeout 0 -v ./internal/resilience/

quickstart:
	$(GO) run ./examples/quickstart

build:
	$(GO) build $(PKGS)
