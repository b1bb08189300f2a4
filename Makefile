# DPS Console — the two commands: `make run` and `make test`.
# Builds go to a persistent target directory outside the clone, so CI and later runs reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/dps-target
DATA_DIR ?=
RUN_ARGS ?=

.PHONY: run test setup-run setup-test build test-rust test-node test-python fmt lint bench setup-ui ui desktop

## make run: install what is missing, build, start the service (headless; prints how to connect).
run: setup-run
	cargo build --release -p dps-cli
	$(CARGO_TARGET_DIR)/release/dps serve $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(RUN_ARGS)

## make test: install what is missing, run every test (Rust unit/integration, then the official SDKs).
test: setup-test lint test-rust test-node test-python

setup-run:
	@scripts/setup.sh run

setup-test:
	@scripts/setup.sh test

build:
	cargo build --workspace --all-targets

test-rust:
	cargo test --workspace --all-targets

test-node:
	cargo build -p dps-cli
	cd tests/node && DPS_BIN=$(CARGO_TARGET_DIR)/debug/dps npm test

# The Python SDK cannot change ports: this suite's service owns 127.0.0.1:443 and :8883 while it runs.
test-python:
	cargo build -p dps-cli
	DPS_BIN=$(CARGO_TARGET_DIR)/debug/dps tests/python/.venv/bin/python -m pytest -q tests/python

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench:
	cargo build --release -p dps-cli
	$(CARGO_TARGET_DIR)/release/dps bench $(BENCH_ARGS)

## make ui: install the console's toolchain when missing (scripts/setup-ui.sh), build ui/ → ui/dist with trunk.
## (env -u RUSTUP_TOOLCHAIN: ui/rust-toolchain.toml must choose cargo, not a toolchain inherited from cargo.)
setup-ui:
	@scripts/setup-ui.sh

ui: setup-ui ui/dist/index.html

# trunk rewrites all of ui/dist on every run, which makes the shell re-embed and relink it: run it only when
# an input changed.
UI_INPUTS := $(shell find ui/src crates/dps-proto/src -name '*.rs') ui/Cargo.toml ui/Cargo.lock ui/index.html \
  ui/Trunk.toml ui/.cargo/config.toml ui/rust-toolchain.toml assets/console.css icons/icon.png
ui/dist/index.html: $(UI_INPUTS) | setup-ui
	cd ui && env -u RUSTUP_TOOLCHAIN trunk build

## make desktop: the desktop shell embedding ui/dist → $(CARGO_TARGET_DIR)/release/dps-console
## (DESKTOP_FLAGS= for a debug build in $(CARGO_TARGET_DIR)/debug).
DESKTOP_FLAGS ?= --release
desktop: ui
	cargo build --manifest-path src-tauri/Cargo.toml --features custom-protocol $(DESKTOP_FLAGS)
