# edgemodule: `make demo` shows modules talking through devhub; `make test` runs every check.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all deps build test lint fmt unit interop demo bench clean-state

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	$(CARGO) build --workspace

fmt:
	$(CARGO) fmt --all

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: deps
	$(CARGO) test --workspace

interop: deps
	bash tests/interop/run.sh

test: lint unit interop
	@echo "make test: all suites passed"

demo: deps
	$(CARGO) build -p edgemodule-devhub -p edgemodule-samples
	bash samples/demo.sh

bench: deps
	$(CARGO) run --release -p edgemodule-bench --bin e2e

clean-state:
	rm -rf .devhub
