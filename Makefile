# The front door. `make test` is what CI runs (.ci/run); `make demo` starts the local cluster.
# Everything installs what it needs first (scripts/install-deps.sh) and builds out of tree.

BUILD_DIR ?= build
SAN_BUILD_DIR ?= build-san
JOBS ?= $(shell nproc)
# Seeds per cluster size for the simulator test under the sanitizers (slower than a plain build).
SAN_SIM_SEEDS ?= 60

.PHONY: all deps build test test-plain test-san test-fuzz sim bench edge deb docker docker-test bench-core bench-node chaos demo demo-secure demo-clean format clean

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# All tests twice: a plain optimized build, then AddressSanitizer + UndefinedBehaviorSanitizer;
# then each fuzz target for a bounded time.
test: test-plain test-san test-fuzz

test-plain: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)
	@echo "simulator:" && grep -h '^seeds=' $(BUILD_DIR)/Testing/Temporary/LastTest.log

test-san: deps
	@cmake -S . -B $(SAN_BUILD_DIR) -DCMAKE_BUILD_TYPE=Debug -DRAFTNGINX_SANITIZE=ON \
	  -DRAFTNGINX_SIM_SEEDS=$(SAN_SIM_SEEDS) >/dev/null
	@cmake --build $(SAN_BUILD_DIR) -j $(JOBS)
	@ctest --test-dir $(SAN_BUILD_DIR) --output-on-failure -j $(JOBS)
	@echo "simulator (sanitizers):" && grep -h '^seeds=' $(SAN_BUILD_DIR)/Testing/Temporary/LastTest.log

# The deterministic cluster simulator on many seeds: make sim SEEDS=20000 NODES=5
SEEDS ?= 2000
NODES ?= 3
sim: build
	@$(BUILD_DIR)/tests/sim/raft-sim --seeds $(SEEDS) --nodes $(NODES)

# raft-nginx against etcd on this machine (bench/compare.py): rewrites docs/benchmarks.md, its
# plot and the README's table. BENCH_MODE=quick (about 4 minutes) or full (about 15). Not part of
# `make test`: timing is measured, never asserted.
BENCH_BUILD_DIR ?= build-release
BENCH_MODE ?= quick
bench:
	@scripts/install-deps.sh bench
	@cmake -S . -B $(BENCH_BUILD_DIR) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BENCH_BUILD_DIR) -j $(JOBS) --target raft-nginx
	@python3 bench/compare.py --binary $(BENCH_BUILD_DIR)/src/raft-nginx --mode $(BENCH_MODE)

# The Debian package (scripts/make-deb.sh, deploy/debian/): the Release binary, a systemd unit
# of Type=notify, a default config and a man page; written to dist/.
deb: build
	@scripts/make-deb.sh $(BUILD_DIR)/src/raft-nginx dist

# The container image, from that package (deploy/docker/), and the compose cluster run for real:
# the walkthrough through three gateways, a leader's container killed and started again. Needs a
# running Docker daemon and docker-compose; the base image is made with debootstrap if no
# registry can be reached. Not part of `make test`.
docker: deb
	@deploy/docker/make-base-image.sh
	@docker-compose -f deploy/docker/docker-compose.yml build

docker-test: docker
	@python3 tests/docker/compose_test.py --no-build

# Edge conditions (bench/edge.py): WAN links against etcd, elections, 20 learners, a long
# outage, catch-up over 1 MB/s with a resumed snapshot; rewrites docs/edge.md and its plots.
# EDGE_MODE=quick (about 9 minutes) or full (10-minute phases, about 40).
EDGE_MODE ?= quick
edge:
	@scripts/install-deps.sh bench
	@cmake -S . -B $(BENCH_BUILD_DIR) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BENCH_BUILD_DIR) -j $(JOBS) --target raft-nginx
	@python3 bench/edge.py --binary $(BENCH_BUILD_DIR)/src/raft-nginx --mode $(EDGE_MODE) --docs

bench-core: build
	@$(BUILD_DIR)/bench/raft_core_bench

bench-node: build
	@$(BUILD_DIR)/bench/node_bench --writers 1,16,64 --seconds 5

# Real clusters under faults, histories checked for linearizability (tests/chaos/chaos.py).
# make chaos CHAOS_SCENARIOS=8 CHAOS_SECONDS=300 SEED=42
CHAOS_SCENARIOS ?= 4
CHAOS_SECONDS ?= 60
chaos: build
	@python3 tests/chaos/chaos.py --binary $(BUILD_DIR)/src/raft-nginx \
	  --kv-tamper $(BUILD_DIR)/tests/support/kv_tamper --integrity \
	  --scenarios $(CHAOS_SCENARIOS) --seconds $(CHAOS_SECONDS) $(if $(SEED),--seed $(SEED))

# libFuzzer (clang) on each fuzz target for FUZZ_SECONDS, from the committed corpus; new inputs
# go to build-fuzz/corpus, crashes to build-fuzz/crashes (copy them to tests/fuzz/regressions/).
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 20
FUZZ_TARGETS := raft_message kv_command config http_request raft_frames tls_handshake backup
# Unoptimized: the instrumented build takes a quarter of the time it takes at -O2 (13 minutes of
# CI's 49 on 2 cores), for fewer inputs a second. For a long run: FUZZ_OPT="-O2 -g".
FUZZ_OPT ?= -O0 -gline-tables-only
test-fuzz: deps
	@CXX=clang++ cmake -S . -B $(FUZZ_BUILD_DIR) -DCMAKE_BUILD_TYPE=None \
	  "-DCMAKE_CXX_FLAGS=$(FUZZ_OPT) -DNDEBUG" -DRAFTNGINX_FUZZ=ON -DRAFTNGINX_BENCH=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@mkdir -p $(FUZZ_BUILD_DIR)/crashes
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD_DIR)/corpus/$$t; \
	  log=$(FUZZ_BUILD_DIR)/fuzz-$$t.log; \
	  $(FUZZ_BUILD_DIR)/tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD_DIR)/crashes/$$t- $(FUZZ_BUILD_DIR)/corpus/$$t \
	    tests/fuzz/corpus/$$t >$$log 2>&1 || { tail -n 40 $$log; echo "fuzz: $$t crashed"; exit 1; }; \
	  echo "fuzz: $$t $$(grep -h 'stat::number_of_executed_units' $$log) in $(FUZZ_SECONDS) s"; \
	done

# The 3-node demo in the foreground (Ctrl-C stops it); data kept in demo-data/.
demo: build
	@scripts/install-deps.sh demo
	@scripts/demo.sh

# The same three nodes with mutual TLS, TLS for clients through nginx, and auth.
demo-secure: build
	@scripts/install-deps.sh demo
	@DEMO_SECURE=1 scripts/demo.sh

demo-clean:
	rm -rf demo-data

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(SAN_BUILD_DIR) $(BENCH_BUILD_DIR)
