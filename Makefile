# The commands a person runs. `make help` lists them.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/s3-import/target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release/s3-import

.PHONY: help build test lint fmt bench demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

build: ## Build the release binary (target dir: $CARGO_TARGET_DIR)
	$(CARGO) build --release --locked

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test: lint ## Lint, then every test (unit, golden, CLI)
	$(CARGO) test --locked

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Throughput and memory figures against baselines measured in the same run
	$(CARGO) build --release --locked --bin s3-import --example bench_gen --example bench_floor --example bench_deliver
	python3 bench/run.py

demo: build ## Convert the example files and print a readable report
	bash infra/demo.sh "$(BIN)"

clean: ## Remove build output
	$(CARGO) clean
