# Top-level entry points. `make test` and `make demo` are the two README commands.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
CMAKE_FLAGS ?=
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo -G Ninja)

.PHONY: all deps configure build test chaos demo bench coverage format format-fix tidy install clean

all: build

deps:
	@if [ "$$(id -u)" = 0 ]; then scripts/install-deps; else scripts/install-deps || sudo scripts/install-deps; fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEPITA_WERROR=ON $(CMAKE_FLAGS)

configure: $(BUILD)/CMakeCache.txt

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# Signals, kill -9 and partitions at random moments of runs on every backend (issue 19):
# CHAOS_INJECTIONS (default 200), CHAOS_SEED (default: random, printed), CHAOS_BACKENDS.
chaos: configure
	cmake --build $(BUILD) -j $(JOBS) --target pepita_cli
	python3 tests/chaos/chaos.py --pepita $(BUILD)/tools/pepita/pepita

demo: build
	$(BUILD)/tools/pepita/pepita run examples/wordcount/job.toml

bench: deps
	cmake -S . -B build-bench $(GENERATOR) -DCMAKE_BUILD_TYPE=Release -DPEPITA_BUILD_TESTS=OFF
	cmake --build build-bench -j $(JOBS)
	@for b in build-bench/bench/*; do echo "== $$b"; "$$b" || exit 1; done

coverage: deps
	cmake -S . -B build-coverage $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DPEPITA_COVERAGE=ON -DPEPITA_BUILD_BENCH=OFF
	cmake --build build-coverage -j $(JOBS)
	lcov --quiet --zerocounters --directory build-coverage
	ctest --test-dir build-coverage --output-on-failure -j $(JOBS)
	lcov --quiet --capture --directory build-coverage --output-file build-coverage/coverage.info
	lcov --quiet --extract build-coverage/coverage.info '$(CURDIR)/src/*' '$(CURDIR)/include/*' '$(CURDIR)/tools/*' --output-file build-coverage/coverage.info
	lcov --summary build-coverage/coverage.info

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
