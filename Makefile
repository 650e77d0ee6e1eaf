# The front door. `make test` is what CI runs (.ci/run); `make demo` starts the local cluster.
# Everything installs what it needs first (scripts/install-deps.sh) and builds out of tree.

BUILD_DIR ?= build
SAN_BUILD_DIR ?= build-san
JOBS ?= $(shell nproc)
# Seeds per cluster size for the simulator test under the sanitizers (slower than a plain build).
SAN_SIM_SEEDS ?= 60

.PHONY: all deps build test test-plain test-san sim bench-core bench-node chaos demo demo-clean format clean

all: build

deps:
	@scripts/install-deps.sh build

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# All tests twice: a plain optimized build, then AddressSanitizer + UndefinedBehaviorSanitizer.
test: test-plain test-san

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
	  --scenarios $(CHAOS_SCENARIOS) --seconds $(CHAOS_SECONDS) $(if $(SEED),--seed $(SEED))

# The 3-node demo in the foreground (Ctrl-C stops it); data kept in demo-data/.
demo: build
	@scripts/install-deps.sh demo
	@scripts/demo.sh

demo-clean:
	rm -rf demo-data

format:
	@git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(SAN_BUILD_DIR)
