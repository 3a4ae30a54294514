# edgemodule: `make demo` shows modules talking through devhub; `make test` runs every check.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all deps build test lint fmt codegen codegen-check unit test-c test-python interop \
        test-cross test-cross-all demo bench bench-c bench-python dist-c dist-python dist-cross \
        sizes clean-state

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace

fmt:
	$(CARGO) fmt --all

# Formatting, lints and the committed C header must be fresh.
lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

codegen:
	$(CARGO) xtask codegen

codegen-check:
	$(CARGO) xtask codegen --check

# Rust unit and integration tests (core against devhub in-process, devhub over real sockets,
# broker mode against mosquitto).
unit: deps
	$(CARGO) test --workspace

# C ABI: CTest runs every C test natively and under valgrind memcheck.
test-c: deps
	$(CARGO) build -p edgemodule-ffi -p edgemodule-devhub
	cmake -S tests/c -B target/c-tests -DCMAKE_BUILD_TYPE=Debug
	cmake --build target/c-tests -j2
	ctest --test-dir target/c-tests --output-on-failure -j2

# Python binding: sync and asyncio clients against the devhub binary (builds into a venv).
test-python: deps
	bash bindings/python/run-tests.sh

# Cross targets: core tests, libedgemodule and the C suite under qemu-arm and wine against
# a native devhub (test-cross-all adds aarch64). See cross/README.md.
test-cross: deps
	bash cross/run.sh armv7 windows

test-cross-all: deps
	bash cross/run.sh aarch64 armv7 windows

# Microsoft's Python and Node SDKs as independent peers against devhub.
interop: deps
	bash tests/interop/run.sh

test: lint codegen-check unit test-c test-python interop test-cross
	@echo "make test: all suites passed"

demo: deps
	$(CARGO) build -p edgemodule-devhub -p edgemodule-samples
	bash samples/demo.sh
	bash samples/c/demo.sh
	bash samples/python/demo.sh

bench: deps
	$(CARGO) run --release -p edgemodule-bench --bin e2e

bench-c: deps
	bash bench/c/run.sh

bench-python: deps
	bash bench/python/run.sh

dist-c: deps
	$(CARGO) xtask dist c

dist-python: deps
	bash bindings/python/build-wheel.sh

dist-cross: deps
	bash cross/wheels.sh dist

sizes: dist-cross
	bash cross/sizes.sh

clean-state:
	rm -rf .devhub
