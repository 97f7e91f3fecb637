# busbar task runner. `just` lists the recipes.
#
# Host crates build into CARGO_TARGET_DIR (default ./target); the guests, a workspace of
# their own, build into CARGO_TARGET_DIR too when it is set (CI shares one cache), else into
# guests/target.

set shell := ["bash", "-euo", "pipefail", "-c"]

guest_target := env("CARGO_TARGET_DIR", justfile_directory() / "guests" / "target")

# Where the tests and the bundled demo find the guest components.
export BUSBAR_GUESTS_DIR := guest_target / "wasm32-wasip2" / "release"
export BUSBAR_DEMO_DIR := BUSBAR_GUESTS_DIR

default:
    @just --list

# Build the example and test services (WebAssembly components for wasm32-wasip2).
build-guests:
    cd guests && cargo build --release --target-dir "{{guest_target}}"

# Build the busbar binary (release).
build:
    cargo build --release --bin busbar

# Run the bundled demo on embedded defaults (Ctrl-C stops it).
demo: build-guests build
    cargo run --release --quiet --bin busbar -- run

# Run every test: unit tests, and integration tests with real guests and the real binary.
test: build-guests build
    cargo test --release --workspace

# Formatting and clippy (-D warnings) for the host crates and the guests.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    cd guests && cargo fmt --all --check
    cd guests && cargo clippy --release --target-dir "{{guest_target}}" -- -D warnings
