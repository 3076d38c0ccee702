# Ferry: a Kafka-protocol log broker.
#
#   make run    start a broker on localhost:9092 with ./data
#   make cluster  start three local nodes of one cluster (./data-cluster)
#   make test   vet (also for macOS and Windows), gofmt check, all tests
#               with -race, short fuzz runs
#   make bench  Go benchmarks of the hot paths, with -benchmem
#   make bench-load   every bench scenario, Ferry against kfake with fsync
#   make fuzz   every fuzz target for FUZZTIME each
#   make test-console   the web console's API and browser tests

GO        ?= go
FUZZTIME  ?= 60s
BENCHTIME ?= 1s
# Fuzz targets as package:target.
FUZZ_TARGETS = ./record:FuzzParse ./record:FuzzCheckRecords ./record:FuzzConvertLegacy ./partition:FuzzProducerSnapshot ./segment:FuzzScan ./server:FuzzRequest ./txn:FuzzReplay ./segment:FuzzIndexLoad ./log:FuzzCheckpoint ./group:FuzzConsumerOffsetsRecords ./share:FuzzReplay ./meta:FuzzApply

# Systems the module must build and vet for besides the one running make.
CROSS = darwin/amd64 darwin/arm64 windows/amd64 windows/arm64

.PHONY: all build run cluster test vet cross fuzz-short fuzz bench bench-broker bench-compare bench-load test-console screenshots test-console-scale clean

all: build

build:
	$(GO) build -o bin/ferry ./cmd/ferry

# group.initial.rebalance.delay.ms is lowered from Kafka's 3000 so that a
# local consumer group starts at once. The admin listener (metrics, health
# checks) is on localhost:9644.
run: build
	./bin/ferry serve -listen localhost:9092 -data-dir ./data -admin-listen localhost:9644 -c group.initial.rebalance.delay.ms=0

# Three nodes of one cluster on this machine (Kafka on localhost:9092-9094,
# data in ./data-cluster/node-N); kill one and watch the others go on.
cluster: build
	./bin/ferry dev cluster -nodes 3 -data-dir ./data-cluster

vet:
	$(GO) vet ./...
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(MAKE) --no-print-directory cross

# go vet for each of CROSS: platform-specific calls live in per-OS files.
cross:
	@set -e; for p in $(CROSS); do \
		echo "vet GOOS=$${p%/*} GOARCH=$${p#*/}"; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./...; \
	done

test: vet
	$(GO) test -race -timeout 20m ./...
	$(MAKE) fuzz-short

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# A run that ends with the fuzzing engine's own "context deadline
# exceeded" and no failing input (the engine missing its deadline on a
# loaded machine) is run once more; any other failure
# fails at once.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		out=$$(mktemp); \
		if $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s $$pkg > $$out 2>&1; then \
			cat $$out; \
		else \
			cat $$out; \
			if grep -q "context deadline exceeded" $$out && ! grep -q "Failing input" $$out; then \
				echo "fuzz $$pkg $$name: the engine missed its deadline; once more"; \
				$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s $$pkg || { rm -f $$out; exit 1; }; \
			else rm -f $$out; exit 1; fi; \
		fi; \
		rm -f $$out; \
	done

# Three runs of each, to quote medians; baselines run beside each case.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 3 ./record ./segment ./log ./partition ./internal/metric

# Whole-broker throughput with the load generator, broker in process.
bench-broker:
	$(GO) run ./cmd/ferry bench -embedded -duration 10s

# The standard scenarios against Ferry and kfake (the in-memory Kafka) in
# one run; medians and ratios in bench-report/.
bench-compare:
	FERRY_BENCH_COMPARE=1 FERRY_BENCH_REPORT=bench-report $(GO) test -run CompareKfake -v -timeout 30m ./bench/

# Every scenario (standard and load) against `ferry serve` and kfake with an
# fsync per batch (the peer as durable as Ferry), each a process of its own,
# so each broker's CPU per GB is its own; medians in bench-report/.
# BENCH_FLAGS adds flags (-scenarios load -repeat 5 ...); BENCH_PORT and the
# next port are used.
BENCH_PORT  ?= 19092
BENCH_FLAGS ?=
bench-load: build
	$(GO) build -o bin/kfakeserve ./internal/benchpeers/kfakeserve
	@d=$$(mktemp -d); kport=$$(($(BENCH_PORT) + 1)); \
	bin/ferry serve -listen 127.0.0.1:$(BENCH_PORT) -data-dir $$d/ferry -console=false >$$d/ferry.log 2>&1 & f=$$!; \
	bin/kfakeserve -sync -data-dir $$d/kfake -port $$kport >$$d/kfake.log 2>&1 & k=$$!; \
	sleep 2; \
	bin/ferry bench compare -target ferry=127.0.0.1:$(BENCH_PORT),pid=$$f -target kfake=127.0.0.1:$$kport,pid=$$k \
		-report bench-report $(BENCH_FLAGS); rc=$$?; \
	kill $$f $$k; wait $$f $$k; rm -rf $$d; exit $$rc

# The web console: its JSON API against a real broker, and its pages in
# headless Chromium (skipped when chromium is not installed).
test-console:
	$(GO) test -race -count=1 ./console ./admin

# Regenerate the screenshots the README shows (docs/console-*.png).
screenshots:
	$(GO) test -count=1 -run TestBrowser ./console -update-screenshots

# The console's API on a topic of 10,000 partitions (FERRY_CONSOLE_PARTITIONS
# sets another count); the latency of each call is logged.
test-console-scale:
	FERRY_CONSOLE_PARTITIONS=$${FERRY_CONSOLE_PARTITIONS:-1} $(GO) test -count=1 -run TestScale -v -timeout 30m ./console

clean:
	rm -rf bin
