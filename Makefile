# The commands a person runs. `make help` lists them.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/s3-import/target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release/s3-import

TOOLS_PY := $${S3_IMPORT_TOOLS:-$(HOME)/.cache/s3-import/tools}/localstack-venv/bin/python

ifndef SAM_CLI_TELEMETRY
export SAM_CLI_TELEMETRY := 0
endif

.PHONY: help build bin validate deploy test lambda-e2e grants lint fmt bench bench-pipeline bench-cost demo clean stack-install stack-up stack-down stack-check

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## The Lambda artifact: cargo lambda build --release --arm64 (installs cargo-lambda + zig)
	@bin="$$(infra/deploy-tools.sh)" && PATH="$$bin:$$PATH" \
	  cargo lambda build --release --arm64 --locked --bin s3-import-lambda
	@echo "Lambda artifact: $(CARGO_TARGET_DIR)/lambda/s3-import-lambda/bootstrap"

bin: ## Build the release command line (s3-import) for this machine
	$(CARGO) build --release --locked --bin s3-import

validate: ## Check template.yaml offline: sam validate --lint and cfn-lint
	@bin="$$(infra/deploy-tools.sh)" && \
	  "$$bin/sam" validate --lint --region us-east-1 --template template.yaml && \
	  "$$bin/cfn-lint" template.yaml && echo "template.yaml: valid (sam validate --lint, cfn-lint)"

deploy: ## sam build + sam deploy --guided (needs AWS credentials)
	@bin="$$(infra/deploy-tools.sh)" && PATH="$$bin:$$PATH" && \
	  sam build --beta-features && sam deploy --guided

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The integration tests talk to the local AWS stack; the clients need only these.
STACK_ENV := AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

test: lint ## Lint, then every test (unit, golden, CLI, sender, pipeline on the local AWS stack, the Lambda binary, the grants)
	@if infra/localstack/stack.sh status >/dev/null 2>&1; then started=""; else infra/localstack/stack.sh up && started=1; fi; \
	$(STACK_ENV) $(CARGO) test --locked && $(MAKE) --no-print-directory lambda-e2e && $(MAKE) --no-print-directory grants; rc=$$?; \
	if [ -n "$$started" ]; then infra/localstack/stack.sh down; fi; exit $$rc

# The release artifact for this machine's architecture (the deployed one is arm64: make build).
HOST_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86-64)
HOST_LAMBDA := $(CARGO_TARGET_DIR)/lambda-host/s3-import-lambda/bootstrap

lambda-e2e: ## The release bootstrap under a local Lambda Runtime API: SQS, scan, EventBridge events, kill -9 mid-import (needs the stack up)
	$(CARGO) build --locked --bin s3-import
	@bin="$$(infra/deploy-tools.sh)" && PATH="$$bin:$$PATH" && \
	  cargo lambda build --release --locked --bin s3-import-lambda --$(HOST_ARCH) \
	    --lambda-dir $(CARGO_TARGET_DIR)/lambda-host
	$(TOOLS_PY) infra/lambda-e2e.py $(HOST_LAMBDA) $(CARGO_TARGET_DIR)/debug/s3-import

grants: ## The function's paths with exactly template.yaml's policy, on moto with IAM enforced (GRANTS_ARGS="--drop ACTION" must fail)
	$(CARGO) build --locked --bin s3-import --bin s3-import-lambda
	@py="$$(infra/grants/install.sh)" && "$$py" infra/grants/grants.py $(GRANTS_ARGS) \
	  $(CARGO_TARGET_DIR)/debug/s3-import $(CARGO_TARGET_DIR)/debug/s3-import-lambda

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Throughput and memory figures against baselines measured in the same run
	$(CARGO) build --release --locked --bin s3-import --example bench_gen --example bench_floor --example bench_deliver --example bench_held
	python3 bench/run.py
	python3 bench/parquet.py

bench-pipeline: stack-up ## The pipeline in memory (DynamoDB-like and endpoint latencies injected), then one 100 MB object and a 20,000-object scan on the local AWS stack
	$(CARGO) build --release --locked --bin s3-import --example bench_gen --example bench_pipeline
	$(TOOLS_PY) bench/pipeline.py

bench-cost: stack-up ## The bill on the local AWS stack: DynamoDB units per 1,000 events (default ids, custom ids, all duplicates), scan reads per kept object, S3/SQS requests per object, $ per million events (QUICK=1: under a minute)
	$(CARGO) build --locked --example bench_cost
	$(STACK_ENV) $(if $(QUICK),BENCH_QUICK=1) $(CARGO_TARGET_DIR)/debug/examples/bench_cost

demo: bin ## The whole pipeline on the local AWS stack and the emulator, ending with a report
	bash infra/demo.sh "$(BIN)"

stack-install: ## Install the local AWS stack (LocalStack: S3, SQS, DynamoDB, STS, IAM, Secrets Manager, EventBridge; no Docker)
	infra/localstack/install.sh

stack-up: ## Start the local AWS stack on 127.0.0.1:4566 (installs it first if needed)
	infra/localstack/stack.sh up

stack-down: ## Stop the local AWS stack
	infra/localstack/stack.sh down

stack-check: stack-up ## Check notifications, conditional writes, transactions and TTL on the stack
	$(TOOLS_PY) infra/localstack/smoke.py

clean: ## Remove build output
	$(CARGO) clean
