# DPS Console — the two commands: `make run` and `make test`.
# Builds go to a persistent target directory outside the clone, so CI and later runs reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/dps-target
DATA_DIR ?=
RUN_ARGS ?=
# A display (X11 or Wayland) means the desktop window; without one, the headless service and its browser console.
HAS_DISPLAY := $(if $(or $(DISPLAY),$(WAYLAND_DISPLAY)),yes,)

.PHONY: run run-desktop run-headless test setup-run setup-test build test-rust test-node test-python test-e2e \
  test-desktop fmt lint bench bench-pg soak setup-ui ui desktop fuzz

## make run: install what is missing, build the console and the service, then open the desktop window when a
## display exists, else start the headless service (it prints the browser console's URL and the admin password).
run: setup-run ui
	cargo build --release -p dps-cli
ifeq ($(HAS_DISPLAY),yes)
	$(MAKE) --no-print-directory run-desktop
else
	$(MAKE) --no-print-directory run-headless
endif

run-headless:
	$(CARGO_TARGET_DIR)/release/dps serve $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(RUN_ARGS)

run-desktop: desktop
	$(if $(DATA_DIR),DPS_DATA_DIR=$(DATA_DIR)) $(CARGO_TARGET_DIR)/release/dps-console

## make test: install what is missing, run every test: Rust (service, console logic, desktop shell), the official
## SDKs (Node, Python), the browser console end to end (Playwright + Chromium), the desktop app (tauri-driver, Xvfb).
test: setup-test lint ui test-rust test-node test-python test-e2e test-desktop

setup-run: setup-ui
	@scripts/setup.sh run

setup-test: setup-ui
	@scripts/setup.sh test

build: ui
	cargo build --workspace --all-targets

# Under a private D-Bus session with a throw-away GNOME Keyring: the master key in the OS keyring is tested there.
test-rust: ui
	scripts/with-keyring.sh cargo test --workspace --all-targets

test-node:
	cargo build -p dps-cli
	cd tests/node && DPS_BIN=$(CARGO_TARGET_DIR)/debug/dps npm test

# The Python SDK cannot change ports: this suite's service owns 127.0.0.1:443 and :8883 while it runs.
test-python:
	cargo build -p dps-cli
	DPS_BIN=$(CARGO_TARGET_DIR)/debug/dps tests/python/.venv/bin/python -m pytest -q tests/python

# The console in headless Chromium against `dps serve` (the dps binary embeds ui/dist). Screenshots go to
# test-artifacts/e2e/; UPDATE_SCREENSHOTS=1 also refreshes assets/screenshots/.
test-e2e: ui
	cargo build -p dps-cli
	cd tests/e2e && DPS_BIN=$(CARGO_TARGET_DIR)/debug/dps npm test

# The desktop app under Xvfb through tauri-driver/WebKitWebDriver (its master key in a throw-away keyring), plus
# the shell's unit tests.
test-desktop: ui
	scripts/with-keyring.sh xvfb-run -a -s "-screen 0 1280x860x24" cargo test --manifest-path src-tauri/Cargo.toml --features custom-protocol -- --nocapture

fmt:
	cargo fmt --all
	cargo fmt --manifest-path src-tauri/Cargo.toml
	cd ui && cargo fmt

lint: ui
	cargo fmt --all -- --check
	cargo fmt --manifest-path src-tauri/Cargo.toml -- --check
	cd ui && cargo fmt -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --manifest-path src-tauri/Cargo.toml --features custom-protocol --all-targets -- -D warnings

## make fuzz: every fuzz target of crates/dps-fuzz under libFuzzer for FUZZ_SECONDS (default 600) each (nightly;
## installs cargo-fuzz when missing; its own target directory); prints executions and corpus size per target.
## Not part of make test — test-rust replays the committed corpus (crates/dps-fuzz/tests/replay.rs).
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

bench:
	cargo build --release -p dps-cli
	$(CARGO_TARGET_DIR)/release/dps bench $(BENCH_ARGS)

## make bench-pg (not part of make test): dps bench on SQLite, PostgreSQL with one instance, and two instances
## behind HAProxy, each beside its bare ceiling (scripts/pg-bench.js; needs the test setup: PostgreSQL, HAProxy).
bench-pg: setup-test
	cargo build --release -p dps-cli
	scripts/pg-bench.js

## make soak (not part of make test): 10 minutes of mixed registrations at 80 % of the measured maximum, then 2 minutes
## at 3x; RSS sampled; figures in test-artifacts/soak/summary.md (RELIABILITY.md). SOAK_MINUTES=1 for a short run.
soak:
	cargo build --release -p dps-cli
	scripts/soak.py

## make ui: install the console's toolchain when missing (scripts/setup-ui.sh), build ui/ → ui/dist with trunk.
## (env -u RUSTUP_TOOLCHAIN: ui/rust-toolchain.toml must choose cargo, not a toolchain inherited from cargo.)
setup-ui:
	@scripts/setup-ui.sh

ui: setup-ui ui/dist/index.html

# trunk rewrites all of ui/dist on every run, which makes the shell and `dps` re-embed it: run it only when an
# input changed. Two trunk builds sharing the target directory (two clones, one CARGO_TARGET_DIR) overwrite each
# other's wasm-bindgen output: the lock makes them take turns, and an empty module fails the build here.
UI_INPUTS := $(shell find ui/src crates/dps-proto/src crates/dps-console-model/src -name '*.rs' 2>/dev/null) ui/Cargo.toml \
  ui/Cargo.lock ui/index.html ui/Trunk.toml ui/.cargo/config.toml ui/rust-toolchain.toml assets/console.css icons/icon.png \
  crates/dps-console-model/Cargo.toml
ui/dist/index.html: $(UI_INPUTS) | setup-ui
	mkdir -p $(CARGO_TARGET_DIR)
	cd ui && flock $(CARGO_TARGET_DIR)/.trunk.lock env -u RUSTUP_TOOLCHAIN trunk build
	@for f in ui/dist/*.wasm; do [ -s "$$f" ] || { echo "ui: $$f is empty (a concurrent trunk build?); run make ui again" >&2; rm -f ui/dist/index.html; exit 1; }; done

## make desktop: the desktop shell embedding ui/dist → $(CARGO_TARGET_DIR)/release/dps-console
## (DESKTOP_FLAGS= for a debug build in $(CARGO_TARGET_DIR)/debug).
DESKTOP_FLAGS ?= --release
desktop: ui
	cargo build --manifest-path src-tauri/Cargo.toml --features custom-protocol $(DESKTOP_FLAGS)
