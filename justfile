# busbar task runner. `just` lists the recipes.
#
# Host crates build into CARGO_TARGET_DIR (default ./target); the guests, a workspace of
# their own, build into CARGO_TARGET_DIR too when it is set (CI shares one cache), else into
# guests/target.

set shell := ["bash", "-euo", "pipefail", "-c"]

guest_target := env("CARGO_TARGET_DIR", justfile_directory() / "guests" / "target")
host_target := env("CARGO_TARGET_DIR", justfile_directory() / "target")
# The componentize-py the Python guests and the Python SDK are built and tested with.
componentize_py := "0.25.0"

# Debian's cross compilers link the ARM builds.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER := "aarch64-linux-gnu-gcc"
export CC_aarch64_unknown_linux_gnu := "aarch64-linux-gnu-gcc"
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER := "arm-linux-gnueabihf-gcc"
export CC_armv7_unknown_linux_gnueabihf := "arm-linux-gnueabihf-gcc"

# Where the tests and the bundled demo find the guest components.
export BUSBAR_GUESTS_DIR := guest_target / "wasm32-wasip2" / "release"
export BUSBAR_DEMO_DIR := BUSBAR_GUESTS_DIR

default:
    @just --list

# Build the example and test services (WebAssembly components for wasm32-wasip2): the Rust
# ones, and the Python ones (guests/python/*.py, with componentize-py; all rebuilt when a file
# there, the Python SDK or the WIT changed).
build-guests: build-python-guests
    cd guests && cargo build --release --target-dir "{{guest_target}}"

# Build the Python services in guests/python with the SDK in guest-sdk/python (installs the
# pinned componentize-py when it is missing).
build-python-guests:
    #!/usr/bin/env bash
    set -euo pipefail
    want={{componentize_py}}
    if [ "$(componentize-py --version 2>/dev/null)" != "componentize-py $want" ]; then
        pip install --quiet "componentize-py==$want" 2>/dev/null \
            || pip3 install --quiet --break-system-packages "componentize-py==$want"
        hash -r
    fi
    out="$BUSBAR_GUESTS_DIR"
    mkdir -p "$out"
    for app in guests/python/*.py; do
        wasm="$out/$(basename "$app" .py).wasm"
        if [ -f "$wasm" ] && [ -z "$(find guests/python guest-sdk/python/src wit -name '*.py' -newer "$wasm" -print -quit -o -name '*.wit' -newer "$wasm" -print -quit)" ]; then
            continue
        fi
        PYTHONPATH=guest-sdk/python/src python3 -m busbar_build build "$app" -o "$wasm.tmp"
        mv "$wasm.tmp" "$wasm"
    done

# Build the busbar binary (release).
build:
    cargo build --release --bin busbar

# Run the bundled demo on embedded defaults (Ctrl-C stops it).
demo: build-guests build
    cargo run --release --quiet --bin busbar -- run

# Run every test: unit tests, and integration tests with real guests and the real binary.
# The Python guests are compiled first, into the compile cache their tests share (a cold
# compile takes about 10 s and 400 MB each; done here, not under the tests' timeouts).
test: build-guests build
    #!/usr/bin/env bash
    set -euo pipefail
    work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
    for wasm in "$BUSBAR_GUESTS_DIR"/py_*.wasm; do
        printf '[[services]]\nname = "%s"\ncomponent = "%s"\n' "$(basename "$wasm" .wasm | tr _ -)" "$wasm"
    done > "$work/python.toml"
    XDG_CACHE_HOME="$BUSBAR_GUESTS_DIR/busbar-test-cache-home" \
        "{{host_target}}/release/busbar" check --manifest "$work/python.toml"
    cargo test --release --workspace

# Benchmarks beside their baselines (prints one table; see docs/BENCHMARKS.md).
bench: build-guests build
    cargo run --release --quiet -p busbar-bench

# Formatting, clippy (-D warnings, also for the gateway build's feature set) and the layering
# check (tests/layers) for the host crates and the guests.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    cargo clippy --release -p busbar --no-default-features --all-targets -- -D warnings
    cargo test --release -p busbar-tests --test layers --quiet
    cd guests && cargo fmt --all --check
    cd guests && cargo clippy --release --target-dir "{{guest_target}}" -- -D warnings

# Fuzz the manifest parser, the component loader and the message decoders for `secs` seconds
# each (nightly toolchain and cargo-fuzz; installs cargo-fuzz when missing). Findings stay in
# runtime/fuzz/artifacts.
fuzz secs="60":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
    cd runtime && for t in manifest component message fleet; do \
        cargo +nightly fuzz run "$t" -- -max_total_time={{secs}} || exit 1; \
    done

# Build the gateway busbar for 64-bit ARM: no compiler (it runs precompiled artifacts), no
# hub (profile `dist`: fat LTO, stripped).
cross-aarch64:
    cargo build --profile dist --target aarch64-unknown-linux-gnu -p busbar --no-default-features --bin busbar
    @ls -l "{{host_target}}/aarch64-unknown-linux-gnu/dist/busbar"

# Build the gateway busbar for 32-bit ARM (artifacts run on wasmtime's Pulley interpreter).
cross-armv7:
    cargo build --profile dist --target armv7-unknown-linux-gnueabihf -p busbar --no-default-features --bin busbar
    @ls -l "{{host_target}}/armv7-unknown-linux-gnueabihf/dist/busbar"

# Run both gateway builds under qemu-user: signed in to a real hub, running what its publisher
# precompiled for them (Rust and Python, with a hot swap); local artifacts; refusals.
test-arm: build-guests build cross-aarch64 cross-armv7
    BUSBAR_AARCH64_BIN="{{host_target}}/aarch64-unknown-linux-gnu/dist/busbar" \
    BUSBAR_ARMV7_BIN="{{host_target}}/armv7-unknown-linux-gnueabihf/dist/busbar" \
    BUSBAR_TEST_GUARD_SECS=300 \
    cargo test --release -p busbar-tests --test arm -- --ignored --test-threads=1
