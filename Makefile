# Top-level entry points. `make test` and `make demo` are the two README commands.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
CMAKE_FLAGS ?=
GENERATOR = $(shell command -v ninja >/dev/null 2>&1 && echo -G Ninja)

.PHONY: all deps configure build test chaos demo demo-ai bench coverage mutation fuzz format format-fix tidy install clean

all: build

# scripts/install-deps with $(1) as its argument, through sudo when not root.
install_deps = if [ "$$(id -u)" = 0 ]; then scripts/install-deps $(1); else scripts/install-deps $(1) || sudo scripts/install-deps $(1); fi

deps:
	@$(call install_deps,)

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEPITA_WERROR=ON $(CMAKE_FLAGS)

configure: $(BUILD)/CMakeCache.txt

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

# Every GoogleTest case is its own CTest entry (cmake/PepitaModule.cmake); after the run, every
# skipped case is listed with its reason. PEPITA_REQUIRE=all (or a comma list: kvm,zram,io_uring,
# guest,vulkan,slurm,netns,root,cgroup,userns,chromium,torch) turns a missing capability into a
# failure, see tests/common.
CTEST_FLAGS ?=
CTEST_RUN = ctest --output-on-failure -j $(JOBS) --test-output-size-passed 65536 $(CTEST_FLAGS)

test: build
	@rc=0; $(CTEST_RUN) --test-dir $(BUILD) --output-junit $(abspath $(BUILD))/ctest-junit.xml || rc=$$?; \
	  scripts/skip-report $(BUILD)/ctest-junit.xml; exit $$rc

# The demo builds only the CLI and the example's worker (Release, no tests or benchmarks) in its own
# build directory, after installing only the packages that needs.
demo:
	@$(call install_deps,--demo)
	cmake -S . -B build-demo $(GENERATOR) -DCMAKE_BUILD_TYPE=Release -DPEPITA_BUILD_TESTS=OFF \
	  -DPEPITA_BUILD_BENCH=OFF
	cmake --build build-demo -j $(JOBS) --target pepita_cli
	build-demo/tools/pepita/pepita run examples/wordcount/job.toml

# The AI example (issue 30, examples/sweep): 16 trials of a digits MLP with Debian's torch, then
# evaluate, select, batch inference in shards and the accuracy check (>= 0.95), on the local pool.
# Prints the best accuracy and the wall time; a second `make demo-ai` is all cached.
demo-ai:
	@$(call install_deps,--demo-ai)
	cmake -S . -B build-demo $(GENERATOR) -DCMAKE_BUILD_TYPE=Release -DPEPITA_BUILD_TESTS=OFF \
	  -DPEPITA_BUILD_BENCH=OFF
	cmake --build build-demo -j $(JOBS) --target pepita_cli
	@start=$$(date +%s.%N); \
	  build-demo/tools/pepita/pepita run --state-dir $(CURDIR)/build-demo/sweep examples/sweep/job.toml || exit $$?; \
	  end=$$(date +%s.%N); \
	  /usr/bin/python3 -c 'import json, sys; b = json.load(open("$(CURDIR)/build-demo/sweep/best.json")); \
	    print("demo-ai: best {} (lr {} width {} epochs {}): val accuracy {:.4f}; the sweep took {:.1f} s (wall)".format( \
	    b["name"], b["lr"], b["width"], b["epochs"], b["val_accuracy"], float(sys.argv[2]) - float(sys.argv[1])))' $$start $$end

# Signals, kill -9 and partitions at random moments of runs on every backend (issue 19):
# CHAOS_INJECTIONS (default 200), CHAOS_SEED (default: random, printed), CHAOS_BACKENDS.
chaos: configure
	cmake --build $(BUILD) -j $(JOBS) --target pepita_cli
	/usr/bin/python3 tests/chaos/chaos.py --pepita $(BUILD)/tools/pepita/pepita

bench: deps
	cmake -S . -B build-bench $(GENERATOR) -DCMAKE_BUILD_TYPE=Release -DPEPITA_BUILD_TESTS=OFF
	cmake --build build-bench -j $(JOBS)
	@for b in build-bench/bench/*; do echo "== $$b"; "$$b" || exit 1; done
	@if [ -d build-bench/python/pepita ]; then echo "== bench/python/bench.py"; \
	  PYTHONPATH=build-bench/python /usr/bin/python3 bench/python/bench.py || exit 1; fi

# Line and branch coverage (lcov 1.16 counts branches only when asked: lcov_branch_coverage=1).
LCOV_RC = --rc lcov_branch_coverage=1
coverage: deps
	cmake -S . -B build-coverage $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DPEPITA_COVERAGE=ON -DPEPITA_BUILD_BENCH=OFF
	cmake --build build-coverage -j $(JOBS)
	lcov --quiet --zerocounters --directory build-coverage
	rm -rf build-coverage-dumps && mkdir -p build-coverage-dumps
	@rc=0; PEPITA_COVERAGE_DUMPS=$(CURDIR)/build-coverage-dumps \
	  $(CTEST_RUN) --test-dir build-coverage --output-junit $(CURDIR)/build-coverage/ctest-junit.xml || rc=$$?; \
	  scripts/skip-report build-coverage/ctest-junit.xml; exit $$rc
	@# Counts written where the build dir is out of reach (a QEMU guest, a chrooted child) come back
	@# under build-coverage-dumps/<run>/ as GCOV_PREFIX=<run> writes them; merged in one at a time.
	@for d in build-coverage-dumps/*/; do \
	  [ -d "$$d$(CURDIR)/build-coverage" ] || continue; echo "coverage: merging counts from $$d"; \
	  gcov-tool merge "$$d$(CURDIR)/build-coverage" build-coverage -o build-coverage || exit 1; done
	lcov $(LCOV_RC) --quiet --capture --directory build-coverage --output-file build-coverage/coverage.info
	lcov $(LCOV_RC) --quiet --extract build-coverage/coverage.info '$(CURDIR)/src/*' '$(CURDIR)/include/*' '$(CURDIR)/tools/*' --output-file build-coverage/coverage.info
	lcov $(LCOV_RC) --summary build-coverage/coverage.info

# Mutation testing (issue 29, scripts/mutation): one source mutation at a time in src/<module>/,
# rebuilt in build-mutation and checked by that module's tests; the file is always restored.
# MODULE: comma list (default: every module); SEED; PER_MODULE: mutants sampled per module, 0 for
# every mutant (a full run, which also regenerates docs/mutation-survivors.md). Reports (text and
# JSON) in build-mutation/mutation-report.*.
MODULE ?=
SEED ?= 1
PER_MODULE ?= 10
mutation: deps
	/usr/bin/python3 scripts/mutation --module '$(MODULE)' --seed $(SEED) --per-module $(PER_MODULE) \
	  --jobs $(JOBS) $(if $(filter 0,$(PER_MODULE)),--survivors-doc docs/mutation-survivors.md)

# libFuzzer targets built by clang (full edge instrumentation + ASan/UBSan) in their own tree,
# FUZZ_SECONDS each from the seed corpora in tests/*/fuzz/corpus; prints exec/s and covered edges.
# A crash fails and keeps its reproducer. FUZZ_TARGETS="fuzz_pool_job ..." runs only those.
FUZZ_SECONDS ?= 120
FUZZ_BUILD ?= build-fuzz
FUZZ_CXX ?= clang++-19
FUZZ_CC ?= clang-19
FUZZ_TARGETS ?=
fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DPEPITA_FUZZ=ON \
	  -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) -DCMAKE_C_COMPILER=$(FUZZ_CC) -DPEPITA_WERROR=OFF \
	  -DPEPITA_BUILD_TESTS=OFF -DPEPITA_BUILD_BENCH=OFF
	cmake --build $(FUZZ_BUILD) --target pepita_fuzz -j $(JOBS)
	scripts/fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

FORMAT_FILES = $(shell git ls-files '*.cpp' '*.hpp' '*.h' '*.cc')
format:
	clang-format --dry-run -Werror $(FORMAT_FILES)

format-fix:
	clang-format -i $(FORMAT_FILES)

tidy: configure
	clang-tidy -p $(BUILD) --quiet $(shell git ls-files 'src/*.cpp')

install: build
	cmake --install $(BUILD)

clean:
	rm -rf build build-* 
